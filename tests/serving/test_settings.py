from pathlib import Path

import pytest

from serving.settings import Settings, SettingsError, build_settings


def test_defaults_are_safe_without_flags_or_environment():
    settings = build_settings([], environ={})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.log_texts is False


def test_flags_win_over_environment_which_wins_over_defaults():
    environ = {
        "SEQSERVE_PORT": "9000",
        "SEQSERVE_MAX_BATCH_SIZE": "8",
        "SEQSERVE_RUNTIME": "tf",
        "SEQSERVE_LOG_TEXTS": "true",
        "SEQSERVE_LOAD_VERSIONS": "all",
    }
    settings = build_settings(["--port", "9100", "--model-repository", "/srv/models"], environ=environ)
    assert settings.port == 9100
    assert settings.model_repository == Path("/srv/models")
    assert settings.max_batch_size == 8
    assert settings.runtime == "tf"
    assert settings.log_texts is True
    assert settings.load_versions == 0
    assert build_settings(["--no-log-texts"], environ=environ).log_texts is False


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--max-batch-size", "0"], {}, "--max-batch-size"),
        (["--runtime", "torch"], {}, "--runtime"),
        ([], {"SEQSERVE_MAX_QUEUE_DELAY_US": "-5"}, "SEQSERVE_MAX_QUEUE_DELAY_US"),
        ([], {"SEQSERVE_LOG_TEXTS": "maybe"}, "SEQSERVE_LOG_TEXTS"),
        ([], {"SEQSERVE_LOAD_VERSIONS": "latest"}, "SEQSERVE_LOAD_VERSIONS"),
    ],
)
def test_bad_values_name_their_source(argv, environ, named):
    with pytest.raises(SettingsError, match=named):
        build_settings(argv, environ=environ)


def test_settings_are_immutable():
    settings = build_settings([], environ={})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
