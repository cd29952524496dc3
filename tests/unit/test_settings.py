"""Settings that must agree with each other are checked when they load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.settings import Settings


def test_defaults_make_a_hang_a_pool_error_before_the_gateway_gives_up() -> None:
    settings = Settings()
    assert settings.init_timeout_s < settings.gateway_ready_timeout_s


@pytest.mark.parametrize(
    ("init", "ready"),
    [pytest.param("30", "25", id="longer"), pytest.param("25", "25", id="equal")],
)
def test_init_timeout_not_shorter_than_ready_timeout_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch, init: str, ready: str
) -> None:
    monkeypatch.setenv("INIT_TIMEOUT_S", init)
    monkeypatch.setenv("GATEWAY_READY_TIMEOUT_S", ready)
    with pytest.raises(ValidationError) as info:
        Settings()
    text = str(info.value)
    assert f"INIT_TIMEOUT_S ({init} s)" in text
    assert f"GATEWAY_READY_TIMEOUT_S ({ready} s)" in text


def test_template_defaults_agree() -> None:
    from infra.template import load_template

    params = load_template()["Parameters"]
    assert params["InitTimeout"]["Default"] < params["GatewayReadyTimeout"]["Default"]
