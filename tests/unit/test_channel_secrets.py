from __future__ import annotations

import pytest

from channels.base import secret_from
from publisher.errors import ConfigError

WHERE = "channels.sms.settings.gateways (town)"


def test_an_inline_secret_wins_and_an_env_secret_is_read() -> None:
    assert secret_from(WHERE, "password", "inline-pw", None, {}) == "inline-pw"
    assert secret_from(WHERE, "password", None, "SMS_PW", {"SMS_PW": "from-env"}) == "from-env"


@pytest.mark.parametrize("environ", [{}, {"SMS_PW": ""}])
def test_a_missing_env_secret_names_the_setting_and_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        secret_from(WHERE, "password", None, "SMS_PW", environ | {"OTHER": "not-this-value"})
    message = str(caught.value)
    assert message == f"{WHERE}: password_env: the environment variable SMS_PW is not set"
    assert "not-this-value" not in message
