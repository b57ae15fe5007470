"""Reports built from the store: the annual disclosure report (年度报告)."""
