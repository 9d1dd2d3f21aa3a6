"""The distributed mode's settings: NATS prefix and the shared gateway key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import SettingsError, load_settings


def test_nats_prefix_and_key_file_are_read():
    """SWITCHBOARD_NATS_PREFIX and SWITCHBOARD_GATEWAY_KEY_FILE reach the settings."""
    settings = load_settings(
        {
            "SWITCHBOARD_NATS_URL": "nats://127.0.0.1:4222",
            "SWITCHBOARD_NATS_PREFIX": "acme-prod_1",
            "SWITCHBOARD_GATEWAY_KEY_FILE": "/etc/switchboard/key.jwk",
        }
    )
    assert settings.nats_prefix == "acme-prod_1"
    assert settings.gateway_key_file == Path("/etc/switchboard/key.jwk")


def test_defaults_keep_one_deployment_per_server_and_the_key_in_the_data_folder():
    """Without them: prefix `switchboard`, and no separate key file."""
    settings = load_settings({})
    assert settings.nats_prefix == "switchboard"
    assert settings.gateway_key_file is None


@pytest.mark.parametrize("prefix", ["a.b", "has space", "*", ">", "x" * 33])
def test_a_prefix_that_is_not_one_subject_token_is_refused(prefix):
    """A prefix with a dot, a wildcard or a space would not be one NATS token: refused by name."""
    with pytest.raises(SettingsError, match="SWITCHBOARD_NATS_PREFIX"):
        load_settings({"SWITCHBOARD_NATS_PREFIX": prefix})


def test_the_nats_connect_timeout_is_read_and_checked():
    """SWITCHBOARD_NATS_CONNECT_TIMEOUT: 15 s unless set; a value that is no number of seconds
    in range is refused by name."""
    assert load_settings({}).nats_connect_timeout_s == 15.0
    assert load_settings({"SWITCHBOARD_NATS_CONNECT_TIMEOUT": "2.5"}).nats_connect_timeout_s == 2.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(SettingsError, match="SWITCHBOARD_NATS_CONNECT_TIMEOUT"):
            load_settings({"SWITCHBOARD_NATS_CONNECT_TIMEOUT": bad})
