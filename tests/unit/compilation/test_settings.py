"""OperatorSettings: defaults, JOCH_* environment variables, validation.

Cases: the documented defaults; every variable read; blank variables ignored; comma lists; a bad
integer, an unknown CEL backend and an empty environment name rejected with the variable named; lists
normalised to tuples; CEL backend aliases stored under their canonical name.
"""

from __future__ import annotations

import pytest

from joch.domain.settings import ENVIRONMENT_VARIABLES, OperatorSettings, SettingsError


def test_defaults() -> None:
    settings = OperatorSettings()
    assert settings.shared_namespaces == ("joch-system",)
    assert settings.default_environment == "dev"
    assert settings.tool_gateway_url == "http://joch-tool-gateway"
    assert settings.mcp_gateway_url == "http://joch-mcp-gateway"
    assert settings.model_router_url == "http://joch-model-router"
    assert (settings.memory_url, settings.trace_url, settings.agbom_url) == (
        "http://joch-memory",
        "http://joch-trace",
        "http://joch-agbom",
    )
    assert settings.keep_manifests == 3
    assert settings.cel_backend == "common-expression-language"
    assert settings.is_shared("joch-system")
    assert not settings.is_shared("default")


def test_from_environ_reads_every_variable() -> None:
    environ = {
        "JOCH_SHARED_NAMESPACES": " joch-system, models ,,",
        "JOCH_DEFAULT_ENVIRONMENT": "staging",
        "JOCH_TOOL_GATEWAY_URL": "http://t",
        "JOCH_MCP_GATEWAY_URL": "http://m",
        "JOCH_MODEL_ROUTER_URL": "http://r",
        "JOCH_MEMORY_URL": "http://mem",
        "JOCH_TRACE_URL": "http://tr",
        "JOCH_AGBOM_URL": "http://ab",
        "JOCH_KEEP_MANIFESTS": "5",
        "JOCH_CEL_BACKEND": " CelPy ",
        "JOCH_DECISION_CALLERS": "system:serviceaccount:gw:envoy, ,u2",
        "UNRELATED": "x",
    }
    assert set(ENVIRONMENT_VARIABLES.values()) <= set(environ)
    settings = OperatorSettings.from_environ(environ)
    assert settings == OperatorSettings(
        shared_namespaces=("joch-system", "models"),
        default_environment="staging",
        tool_gateway_url="http://t",
        mcp_gateway_url="http://m",
        model_router_url="http://r",
        memory_url="http://mem",
        trace_url="http://tr",
        agbom_url="http://ab",
        keep_manifests=5,
        cel_backend="cel-python",
        decision_callers=("system:serviceaccount:gw:envoy", "u2"),
    )


def test_blank_variables_keep_defaults() -> None:
    assert OperatorSettings.from_environ({"JOCH_DEFAULT_ENVIRONMENT": "  "}) == OperatorSettings()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"JOCH_KEEP_MANIFESTS": "three"}, "JOCH_KEEP_MANIFESTS must be an integer", id="not an int"
        ),
        pytest.param({"JOCH_KEEP_MANIFESTS": "0"}, "keep_manifests must be at least 1", id="zero"),
        pytest.param(
            {"JOCH_CEL_BACKEND": "v8"},
            "JOCH_CEL_BACKEND: unknown CEL backend 'v8'; use 'common-expression-language' or 'cel-python'",
            id="unknown CEL backend",
        ),
    ],
)
def test_bad_values_are_rejected(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_environ(environ)


def test_constructor_validation() -> None:
    with pytest.raises(SettingsError, match="not a string"):
        OperatorSettings(shared_namespaces="joch-system")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="cel_backend: unknown CEL backend 'v8'"):
        OperatorSettings(cel_backend="v8")
    assert OperatorSettings(cel_backend="rust").cel_backend == "common-expression-language"
    with pytest.raises(SettingsError, match="default_environment"):
        OperatorSettings(default_environment="")
    assert OperatorSettings(shared_namespaces=["a"]).shared_namespaces == ("a",)  # type: ignore[arg-type]
