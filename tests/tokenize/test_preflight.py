"""The driver-side checks before Ray starts: each mistake is one UserError with its exact message."""

from __future__ import annotations

import pytest

from pipeline.codecs.semanticodec.checkpoint import SYNTHETIC_MARKER
from pipeline.demo_audio import write_samples
from pipeline.errors import CheckpointError, ConfigError, OutputError, SourceError
from pipeline.output.folder import TMP_DIR
from pipeline.tokenize import preflight as P
from pipeline.tokenize.config import TokenizeConfig


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preflight") / "audio"
    write_samples(folder, include_bad=False)
    return folder


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_settings_out_of_range():
    with pytest.raises(ConfigError) as error:
        P.check_settings(TokenizeConfig(output="o", rows_per_file=0))
    assert str(error.value) == "--rows-per-file must be at least 1 (got 0)"
    with pytest.raises(ConfigError) as error:
        P.check_settings(TokenizeConfig(output="o", max_duration_s=0.0))
    assert str(error.value) == "--max-duration-s must be positive (got 0.0)"
    with pytest.raises(ConfigError) as error:
        P.check_settings(TokenizeConfig(output="o", retryable_exit_code=256))
    assert str(error.value) == "--retryable-exit-code must be 0 to 255 (got 256)"
    P.check_settings(TokenizeConfig(output="o"))  # the defaults pass


def test_s3_without_credentials(no_aws):
    config = TokenizeConfig(source="/data/clips", output="s3://corpus/run1")
    with pytest.raises(ConfigError) as error:
        P.check_s3_credentials(config)
    assert str(error.value) == (
        "no AWS credentials found for s3://corpus/run1: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or AWS_PROFILE / --aws-profile (or run with an instance or pod role); "
        "--s3-anon reads public buckets")


def test_s3_credentials_found_or_not_needed(no_aws, monkeypatch):
    P.check_s3_credentials(TokenizeConfig(source="s3://public/audio", output="/tmp/out", s3_anon=True))
    P.check_s3_credentials(TokenizeConfig(source="/data/clips", output="/tmp/out"))  # no s3:// URL at all
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    P.check_s3_credentials(TokenizeConfig(source="s3://bucket/audio", output="/tmp/out"))


def test_s3_unknown_profile(no_aws):
    config = TokenizeConfig(source="s3://bucket/audio", output="/tmp/out", aws_profile="nobody")
    with pytest.raises(ConfigError) as error:
        P.check_s3_credentials(config)
    assert str(error.value) == ("AWS profile 'nobody' is not in ~/.aws/config or ~/.aws/credentials: "
                                "check --aws-profile / $AWS_PROFILE")


def test_output_is_a_file(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(OutputError) as error:
        P.check_output(str(target), {})
    assert str(error.value) == f"output {target} is a file; --output takes a folder (new or existing)"


def test_output_under_a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError) as error:
        P.check_output(str(tmp_path / "a_file" / "out"), {})
    assert str(error.value) == f"cannot create output {tmp_path / 'a_file' / 'out'}: a parent of it is a file"


def test_output_is_created_and_the_probe_removed(tmp_path):
    target = tmp_path / "new" / "out"
    P.check_output(str(target), {})
    assert target.is_dir() and list((target / TMP_DIR).iterdir()) == []


def test_output_not_writable(tmp_path, monkeypatch):
    import fsspec.implementations.memory as memory

    def denied(self, path, value, **kwargs):
        raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(memory.MemoryFileSystem, "pipe_file", denied)
    with pytest.raises(OutputError) as error:
        P.check_output("memory://bucket/out", {})
    assert str(error.value) == ("cannot write to output memory://bucket/out: permission denied (for S3: "
                                "s3:PutObject and s3:DeleteObject on the prefix)")


def test_output_bucket_missing_is_not_created():
    from tests.support.s3 import S3_ENV, MotoServer

    with MotoServer() as endpoint, pytest.MonkeyPatch.context() as env:
        for key, value in S3_ENV.items():
            env.setenv(key, value)
        options = {"s3": {"endpoint_url": endpoint}}
        with pytest.raises(OutputError) as error:
            P.check_output("s3://no-such-bucket/run1", options)
        expected = "cannot write to output s3://no-such-bucket/run1: the bucket does not exist"
        assert str(error.value) == expected
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        assert not fs.exists("no-such-bucket")


def test_source_missing(tmp_path):
    config = TokenizeConfig(source=str(tmp_path / "nowhere"), output=str(tmp_path / "out"))
    with pytest.raises(SourceError) as error:
        P.check_source(config, {})
    assert str(error.value) == f"source {tmp_path / 'nowhere'} does not exist"


def test_source_lists_its_units(audio, tmp_path):
    source, units = P.check_source(TokenizeConfig(source=str(audio), output=str(tmp_path / "out")), {})
    assert source.kind == "files" and len(units) == 7


def test_manifest_without_uri_column(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("name,label\nclip.wav,dog\n")
    with pytest.raises(SourceError) as error:
        P.check_source(TokenizeConfig(source=str(manifest), output=str(tmp_path / "out")), {})
    assert str(error.value).startswith(f"manifest {manifest} has no audio path column")


def test_checkpoint_missing(tmp_path):
    config = TokenizeConfig(output=str(tmp_path / "out"), checkpoint=str(tmp_path / "no_weights"))
    with pytest.raises(CheckpointError) as error:
        P.check_checkpoint(config, {})
    assert str(tmp_path / "no_weights") in str(error.value) and "\n" not in str(error.value)


def test_synthetic_checkpoint_resolves_to_a_marked_folder(tmp_path):
    config = TokenizeConfig(output=str(tmp_path / "out"), checkpoint="synthetic:small",
                            semantic_vocab_size=4096)
    location = P.check_checkpoint(config, {})
    assert "://" not in location and P.is_synthetic("synthetic:small", location)
    assert P.is_synthetic("some/folder", location)  # the marker file, whatever the name given


def test_is_synthetic_reads_the_marker(tmp_path):
    assert not P.is_synthetic(str(tmp_path), str(tmp_path))
    (tmp_path / SYNTHETIC_MARKER).write_text("{}")
    assert P.is_synthetic(str(tmp_path), str(tmp_path))
    assert not P.is_synthetic("hf://haoheliu/SemantiCodec", "hf://haoheliu/SemantiCodec")


def test_preflight_of_a_good_local_run(audio, tmp_path):
    config = TokenizeConfig(source=str(audio), output=str(tmp_path / "out"), checkpoint="synthetic:small",
                            semantic_vocab_size=4096)
    resolved = P.preflight(config)
    assert len(resolved.units) == 7 and resolved.synthetic and (tmp_path / "out").is_dir()


def test_push_to_hub_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    config = TokenizeConfig(output=str(tmp_path / "out"), push_to_hub="me/corpus")
    with pytest.raises(ConfigError) as error:
        P.check_hub_token(config)
    assert str(error.value) == ("no Hugging Face token to push to me/corpus: run `hf auth login` or set "
                                "HF_TOKEN (or leave out --push-to-hub)")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    P.check_hub_token(config)


# --- only known errors become these lines, chained; the environment and the weights load ------------

def test_a_bug_inside_the_source_is_not_reported_as_a_source_error(monkeypatch, audio, tmp_path):
    def buggy(config, storage_options):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr("pipeline.tokenize.preflight.open_config_source", buggy)
    with pytest.raises(TypeError):
        P.check_source(TokenizeConfig(source=str(audio), output=str(tmp_path / "out")), {})


def test_a_known_error_becomes_one_line_chained_to_its_cause(monkeypatch, audio, tmp_path):
    reset = ConnectionResetError(104, "Connection reset by peer")

    def unreachable(config, storage_options):
        raise reset

    monkeypatch.setattr("pipeline.tokenize.preflight.open_config_source", unreachable)
    with pytest.raises(SourceError, match="cannot read source .*ConnectionResetError") as error:
        P.check_source(TokenizeConfig(source=str(audio), output=str(tmp_path / "out")), {})
    assert error.value.__cause__ is reset


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_weights_the_safe_loader_refuses_are_refused_before_ray_starts(small_checkpoint, audio, tmp_path):
    import pickle
    import shutil

    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant

    checkpoint = shutil.copytree(small_checkpoint, tmp_path / "ckpt")
    marker = tmp_path / "code-ran"
    with open(checkpoint / SemantiCodecVariant(100, 4096).encoder_file, "wb") as handle:
        pickle.dump({"audiomae.model.cls_token": _Payload(marker)}, handle)
    config = TokenizeConfig(source=str(audio), output=str(tmp_path / "out"), checkpoint=str(checkpoint),
                            semantic_vocab_size=4096)
    with pytest.raises(CheckpointError, match="the safe weights-only loader refused it") as error:
        P.preflight(config)
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_library_that_cannot_load_is_refused_with_its_likely_cause(monkeypatch):
    import soundfile

    from pipeline.faults import Fault

    def missing(*args, **kwargs):
        raise OSError("cannot load library 'libsndfile.so.1': libsndfile.so.1: cannot open shared object file")

    from pipeline.environment import check_libraries

    check_libraries()  # this machine's are sound
    monkeypatch.setattr(soundfile, "write", missing)
    with pytest.raises(Fault, match=r"environment check of libsndfile .* failed with OSError: cannot load library "
                                    r"'libsndfile.so.1'.*likely cause: a native library cannot be loaded"):
        check_libraries()


def test_an_unknown_protocol_is_a_mistake_not_a_bug(tmp_path, audio):
    with pytest.raises(SourceError, match="--source foo://x/: unknown protocol 'foo'"):
        P.check_source(TokenizeConfig(source="foo://x/", output=str(tmp_path / "out")), {})
    with pytest.raises(OutputError, match="--output foo://y: unknown protocol 'foo'"):
        P.check_output("foo://y", {})
