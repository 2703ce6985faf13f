"""`pipeline.redaction`: credentials out of every URL in a text, control characters out of lines."""

from __future__ import annotations

import pytest

from pipeline.redaction import REDACTED, redact, redact_all, terminal_line

SIGV4 = ("https://b.s3.amazonaws.com/a.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F2024"
         "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
         "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN&X-Amz-Signature=0123456789abcdef")
SIGV2 = "https://b.s3.amazonaws.com/a.wav?AWSAccessKeyId=AKIAEXAMPLE&Expires=1700000000&Signature=abc%2Bdef%3D"
GCS = ("https://storage.googleapis.com/b/a.wav?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam"
       "&X-Goog-Date=20240101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host&X-Goog-Signature=feedbeef")
GCS_V2 = "https://storage.googleapis.com/b/a.wav?GoogleAccessId=sa@p.iam.gserviceaccount.com&Expires=1&Signature=x%2By"
AZURE = ("https://acct.blob.core.windows.net/c/a.wav?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z"
         "&st=2024-01-01T00:00:00Z&spr=https&skoid=11111111-aaaa&sktid=22222222-bbbb&sig=c2VjcmV0c2ln%3D")
SECRETS = ("AKIAEXAMPLE", "EXAMPLETOKEN", "0123456789abcdef", "abc%2Bdef", "feedbeef", "sa%40p.iam", "sa@p.iam",
           "x%2By", "c2VjcmV0c2ln", "11111111-aaaa", "22222222-bbbb", "2030-01-01")


@pytest.mark.parametrize("url", [SIGV4, SIGV2, GCS, GCS_V2, AZURE])
def test_presigned_urls_keep_their_object_and_parameter_names_but_no_secret(url):
    redacted = redact(url)
    assert not [secret for secret in SECRETS if secret in redacted], redacted
    assert redacted.split("?")[0] == url.split("?")[0]  # the object it names stays readable
    names = [pair.split("=")[0] for pair in url.split("?")[1].split("&")]
    assert [pair.split("=")[0] for pair in redacted.split("?")[1].split("&")] == names
    assert f"={REDACTED}" in redacted
    assert redact(redacted) == redacted


@pytest.mark.parametrize(("given", "expected"), [
    ("s3://AKIAEXAMPLE:SECRET@bucket/a.wav", "s3://REDACTED@bucket/a.wav"),
    ("s3://AKIAEXAMPLE:wJalr/K7MDENG/bPxRfiCY@bucket/out", "s3://REDACTED@bucket/out"),  # a secret with '/'
    ("https://user:pa:ss@host.example/x.wav", "https://REDACTED@host.example/x.wav"),
    ("https://token@host.example/x.wav", "https://REDACTED@host.example/x.wav"),
    ("simplecache::s3://K:S@b/x.wav", "simplecache::s3://REDACTED@b/x.wav"),
    ("tar://a.wav::https://h/x.tar?X-Goog-Signature=zz", f"tar://a.wav::https://h/x.tar?X-Goog-Signature={REDACTED}"),
])
def test_userinfo_and_chained_urls(given, expected):
    assert redact(given) == expected


@pytest.mark.parametrize("unchanged", [
    "s3://bucket/dir@2024/a.wav", "http://127.0.0.1:8080/a@b/c.wav", "hf://datasets/o/r@main/x.parquet",
    "file:///data/a@b.wav", "/data/a.wav?sig=1", "https://x.org/a.wav?st=10&sp=2&start=3",
    "a $x^$ b.wav", "shard-000.tar#clips/a.wav", "", "no url here: 403 Forbidden",
])
def test_what_carries_no_credential_is_left_as_it_is(unchanged):
    assert redact(unchanged) == unchanged


def test_urls_inside_messages_and_structures():
    message = (f"ClientResponseError: 403, message='Forbidden', url=URL('{SIGV2}') while reading "
               "s3://K:S@b/x.wav; retry")
    redacted = redact(message)
    assert "abc%2Bdef" not in redacted and "K:S" not in redacted and redacted.endswith("; retry")
    assert "url=URL('https://b.s3.amazonaws.com/a.wav?AWSAccessKeyId=REDACTED" in redacted
    value = {"source": {"url": SIGV4}, "files": [GCS, 3, None], "keys": ("s3://K:S@b/x",), 4: 1.5}
    out = redact_all(value)
    assert "0123456789abcdef" not in str(out) and "feedbeef" not in str(out) and "K:S" not in str(out)
    assert out[4] == 1.5 and out["files"][1:] == [3, None] and isinstance(out["keys"], tuple)


def test_terminal_lines_escape_control_characters_from_data():
    line = terminal_line("id \x1b[2J\x1b]0;owned\x07 a\rb \x9b31m c\u202ed\n\tnext " + SIGV2)
    assert line.startswith("id \\x1b[2J\\x1b]0;owned\\x07 a\\rb \\x9b31m c\\u202ed\n\tnext ")
    assert "abc%2Bdef" not in line
    assert not any(ord(ch) < 32 and ch not in "\n\t" or 0x7f <= ord(ch) <= 0x9f for ch in line)
    assert terminal_line("tokenizing: 100% ✓ ümlaut") == "tokenizing: 100% ✓ ümlaut"
