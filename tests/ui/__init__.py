"""Browser tests: the staff and resident pages in Debian's Chromium, driven by Playwright."""
