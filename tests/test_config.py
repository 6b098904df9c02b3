import pytest

from rag import ConfigError, Settings


def test_defaults_and_store_path(tmp_path) -> None:
    s = Settings(data_dir=str(tmp_path))
    assert s.store_path == str(tmp_path / "store")
    assert Settings(store="/x/y", data_dir=str(tmp_path)).store_path == "/x/y"


@pytest.mark.parametrize(
    "bad",
    [
        {"top_k": 0},
        {"chunk_size": 100, "chunk_overlap": 100},
        {"chunk_overlap": -1},
        {"temperature": -0.1},
        {"threads": -2},
        {"quote_echo": "false"},
    ],
)
def test_invariants(bad) -> None:
    with pytest.raises(ConfigError):
        Settings(**bad)


def test_env_then_flags_precedence() -> None:
    env = {
        "RAGCHAT_STORE": "/env/store",
        "RAGCHAT_TOP_K": "7",
        "RAGCHAT_TEMPERATURE": "0.5",
        "RAGCHAT_DATA_DIR": "/env/data",
    }
    s = Settings.from_env(env)
    assert (s.store, s.top_k, s.temperature, s.data_dir) == ("/env/store", 7, 0.5, "/env/data")
    s = Settings.from_env(env, store="/flag/store", top_k=None)
    assert s.store == "/flag/store" and s.top_k == 7


def test_bad_env_value_says_which() -> None:
    with pytest.raises(ConfigError, match="RAGCHAT_TOP_K"):
        Settings.from_env({"RAGCHAT_TOP_K": "many"})
