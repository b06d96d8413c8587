"""Credential masking: what is hidden, and what must stay readable."""

from __future__ import annotations

import pytest

from logcast.secrets import MASK, is_secret_name, mask_argv, mask_command, mask_env, mask_line, mask_text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--api-key", "X"], ["--api-key", MASK]),
        (["--api-key=X"], [f"--api-key={MASK}"]),
        (["--token=X"], [f"--token={MASK}"]),
        (["--token", "abc"], ["--token", MASK]),
        (["password=hunter2"], [f"password={MASK}"]),
        (["--password", "hunter2"], ["--password", MASK]),
        (["--hf-token", "hf_abcdefghijklmnop"], ["--hf-token", MASK]),
        (["--auth-token", "t"], ["--auth-token", MASK]),
        (["--apiKey", "t"], ["--apiKey", MASK]),
        (["--client-secret=s"], [f"--client-secret={MASK}"]),
        (["-Dpassword=x"], [f"-Dpassword={MASK}"]),
        (["HF_TOKEN=hf_x"], [f"HF_TOKEN={MASK}"]),
        (["OPENAI_API_KEY=abc"], [f"OPENAI_API_KEY={MASK}"]),
        (["DB_PASSWORD=abc"], [f"DB_PASSWORD={MASK}"]),
        (["X-Api-Key: abc"], [f"X-Api-Key: {MASK}"]),
        (["Authorization: Bearer abcdefghijk"], [f"Authorization: {MASK}"]),
        (["postgres://u:pw@h:5432/db"], [f"postgres://u:{MASK}@h:5432/db"]),
        (["--db", "redis://:s3cret@127.0.0.1:6379/0"], ["--db", f"redis://:{MASK}@127.0.0.1:6379/0"]),
        (["sk-secret123456"], [MASK]),
        (["--key-from", "sk-proj-abcdefgh12"], ["--key-from", MASK]),
        (["ghp_abcdefghijklmnop"], [MASK]),
        # a credential in a URL's query (a review)
        (["curl", "https://h/x?token=abc123"], ["curl", f"https://h/x?token={MASK}"]),
        (
            ["wget", "https://b.s3.amazonaws.com/k?X-Amz-Expires=60&X-Amz-Signature=ab12"],
            ["wget", f"https://b.s3.amazonaws.com/k?X-Amz-Expires=60&X-Amz-Signature={MASK}"],
        ),
        (
            ["--url", "http://h/v1?model=q&api_key=s3c&n=1#top"],
            ["--url", f"http://h/v1?model=q&api_key={MASK}&n=1#top"],
        ),
        (
            ["sh", "-c", "wget 'http://h/f?access_token=zz'"],
            ["sh", "-c", f"wget 'http://h/f?access_token={MASK}'"],
        ),
        # the short flags of the programs known to take a password in one (a review)
        (["mysql", "-uroot", "-phunter2", "shop"], ["mysql", "-uroot", f"-p{MASK}", "shop"]),
        (["/usr/bin/mariadb-dump", "-ps3cret"], ["/usr/bin/mariadb-dump", f"-p{MASK}"]),
        (["redis-cli", "-a", "pw", "ping"], ["redis-cli", "-a", MASK, "ping"]),
        (["sshpass", "-pPW", "ssh", "host"], ["sshpass", f"-p{MASK}", "ssh", "host"]),
        (["curl", "-u", "bob:pw", "http://x"], ["curl", "-u", f"bob:{MASK}", "http://x"]),
        (["curl", "--user=bob:pw"], ["curl", f"--user=bob:{MASK}"]),
        (["curl", "-su", "bob:pw", "http://x"], ["curl", "-su", f"bob:{MASK}", "http://x"]),
        (["curl", "-sSubob:pw"], ["curl", f"-sSubob:{MASK}"]),
        # ...wherever the program comes: after sudo, env, exec, a shell's && (a second review)
        (["sudo", "mysql", "-pX"], ["sudo", "mysql", f"-p{MASK}"]),
        (["env", "A=1", "mysql", "-pX"], ["env", "A=1", "mysql", f"-p{MASK}"]),
        (["sh", "-c", "exec mysql -phunter2 db"], ["sh", "-c", f"exec mysql -p{MASK} db"]),
        (
            ["sh", "-c", "cd /app && curl -u bob:pw http://x"],
            ["sh", "-c", f"cd /app && curl -u bob:{MASK} http://x"],
        ),
        # a header or variable given as an option's value in one word (a review: wget's form)
        (
            ["wget", "--header=X-Api-Key: PW17", "http://x"],
            ["wget", f"--header=X-Api-Key: {MASK}", "http://x"],
        ),
        (["--header=Authorization: Bearer abcdefghijk"], [f"--header=Authorization: {MASK}"]),
        (["docker", "run", "--env=API_KEY=PW", "img"], ["docker", "run", f"--env=API_KEY={MASK}", "img"]),
        (["-H=Cookie: session=abc"], [f"-H=Cookie: {MASK}"]),
        # sshpass runs ssh, whose -p is a port
        (
            ["sshpass", "-p", "pw", "ssh", "-p", "2222", "h"],
            ["sshpass", "-p", MASK, "ssh", "-p", "2222", "h"],
        ),
    ],
)
def test_credentials_are_masked(argv: list[str], expected: list[str]) -> None:
    assert mask_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["llama-server", "-m", "model.gguf", "--port", "8081"],
        ["--max-tokens", "512"],
        ["--num-tokens", "64"],
        ["--max-tokens=512"],
        ["tokens_per_s=12.5"],
        ["--token-limit", "4096"],
        ["--sort-key", "name"],
        ["--keyfile", "server.pem"],
        ["--host", "https://example.org:8443/api"],
        ["--no-auth", "--port", "8080"],  # a flag after a secret-sounding switch is a flag
        ["-p", "8080"],  # short flags are not guessed at
        ["server", "-p", "8080", "-a", "x"],  # ...but for the programs known to take a password
        ["mysql", "-p", "shop"],  # `-p` alone asks for it: shop is the database
        ["curl", "-u", "bob", "http://x"],  # no password given: curl asks
        ["--skip-warmup"],
        ["--header=Accept: text/plain", "--url=http://example.org/x", "--env=MODE=fast"],
    ],
)
def test_ordinary_arguments_stay_readable(argv: list[str]) -> None:
    assert mask_argv(argv) == argv


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("DB_PASSWORD", True),
        ("PGPASSWORD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("authToken", True),
        ("--hf-token", True),
        ("GITHUB_TOKEN", True),
        ("X-Amz-Signature", True),
        ("--signature-file", False),
        ("MAX_TOKENS", False),
        ("tokens_per_s", False),
        ("--num-tokens", False),
        ("AWS_ACCESS_KEY_ID", False),
        ("CUDA_VISIBLE_DEVICES", False),
        ("PYTHONUNBUFFERED", False),
        ("", False),
        ("-" * 20, False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_mask_env_hides_credential_variables_and_url_passwords() -> None:
    env = {
        "HF_TOKEN": "hf_abcdefghijkl",
        "OPENAI_API_KEY": "sk-abcdefghijkl",
        "DB_PASSWORD": "hunter2",
        "DATABASE_URL": "postgres://app:hunter2@db/app",
        "MAX_TOKENS": "512",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    assert mask_env(env) == {
        "HF_TOKEN": MASK,
        "OPENAI_API_KEY": MASK,
        "DB_PASSWORD": MASK,
        "DATABASE_URL": f"postgres://app:{MASK}@db/app",
        "MAX_TOKENS": "512",
        "CUDA_VISIBLE_DEVICES": "0",
    }


def test_mask_text_finds_values_by_their_shape() -> None:
    assert mask_text("curl -H 'Authorization: Bearer abcdefgh12345'") == (
        f"curl -H 'Authorization: Bearer {MASK}'"
    )
    assert mask_text("Basic dXNlcjpwYXNzd29yZA==") == f"Basic {MASK}"
    assert mask_text("key sk-ant-api03-abcdefgh and hf_ABCDEFGHIJ") == f"key {MASK} and {MASK}"
    assert mask_text("no secrets: 512 tokens, bearer of news") == "no secrets: 512 tokens, bearer of news"
    assert mask_text("GET /search?q=tokens&max_tokens=5&page=2") == "GET /search?q=tokens&max_tokens=5&page=2"


def test_mask_command_is_one_shell_line() -> None:
    argv = ["llama-server", "-m", "my model.gguf", "--api-key", "sk-secret123456", "password=hunter2"]
    assert mask_command(argv) == f"llama-server -m 'my model.gguf' --api-key {MASK} password={MASK}"
    assert "hunter2" not in mask_command(argv) and "sk-secret" not in mask_command(argv)


def test_mask_line_keeps_the_spacing_of_a_status_line() -> None:
    line = "starting python -c 'import time'  --api-key sk-secret123456 password=hunter2 (run 1)"
    assert mask_line(line) == f"starting python -c 'import time'  --api-key {MASK} password={MASK} (run 1)"
    assert mask_line("") == ""
    assert mask_line("  --token t") == f"  --token {MASK}"


def test_hostile_text_is_left_as_it_is() -> None:
    """Long words that only look like the start of a credential come back unchanged
    (every pattern is bounded, so this runs in milliseconds, not minutes)."""
    hostile = [
        "a" * 200_000,
        "-" * 200_000,
        "x://" + "u" * 100_000 + ":" * 100_000,
        "Bearer " + "=" * 7,
        "A" * 100_000 + "a" * 100_000 + "=v",
        "?" + "a" * 100_000 + "=v",
        "&a" * 100_000,
    ]
    # a long credential is masked whole, not only its first few KiB (a review)
    token = "A" * 5000 + "TAIL"
    assert mask_text(f"https://h/x?token={token}&n=1") == f"https://h/x?token={MASK}&n=1"
    for text in hostile:
        assert mask_text(text) == text
        assert mask_argv([text, text]) == [text, text]
        assert mask_line(text + " " + text) == text + " " + text
        assert not is_secret_name(text)


def test_logcast_ps_masks_what_an_older_server_left_in_clear() -> None:
    from logcast.cli.control import masked

    raw = {"name": "m", "command": ["srv", "--api-key", "sk-abcdefghijk"], "env": {"HF_TOKEN": "x", "A": "b"}}
    assert masked(raw) == {
        "name": "m",
        "command": ["srv", "--api-key", MASK],
        "env": {"HF_TOKEN": MASK, "A": "b"},
    }
    assert masked({"name": "m", "state": "running"}) == {"name": "m", "state": "running"}


def test_a_command_inside_one_word_is_masked_too() -> None:
    shown = mask_command(["sh", "-c", "exec llama-server --api-key hunter2 --port 8080"])
    assert "hunter2" not in shown and "--port 8080" in shown
    words = mask_argv(["bash", "-lc", "DB_PASSWORD=pw ./run --token=abc123  --max-tokens 5"])
    assert words[2] == "DB_PASSWORD=•••••• ./run --token=••••••  --max-tokens 5"
