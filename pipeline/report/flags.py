"""The flags at the top of the report (kind, severity, count, message), and the exit code they
give a job: non-zero when any flag is an error."""

from __future__ import annotations

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
ERROR_EXIT_CODE = 1
TOKEN_RATE_TOLERANCE = 0.02


def build_flags(settings: dict, stats: dict, uris: dict, failures: dict, picks: list[dict], *,
                mixed: list, codec_error: str | None, unreadable: list) -> list[dict]:
    """Errors first, then warnings, then notes."""
    flags = []

    def add(kind, severity, count, message):
        flags.append({"kind": kind, "severity": severity, "count": int(count), "message": message})

    if settings["synthetic_weights"]:
        add("synthetic_weights", "warning", 1, "the tokens were made with SYNTHETIC (random) weights: they and "
            "the decoded audio mean nothing")
    if settings["settings_source"].startswith("none"):
        add("unknown_codec", "error", 1, "no codec provenance in the shards nor in manifest.json; assumed "
            f"token rate {settings['token_rate']}, semantic vocabulary {settings['semantic_vocab_size']}")
    if mixed:
        add("mixed_provenance", "error", len(mixed), f"{len(mixed)} shard(s) were made with another codec or "
            "checkpoint than the first one: " + ", ".join(m["shard"] for m in mixed[:5]))
    if unreadable:
        add("unreadable_shards", "error", len(unreadable), "unreadable shard(s): " +
            "; ".join(f"{u['shard']}: {u['error']}" for u in unreadable[:3]))
    if codec_error:
        add("codec_unavailable", "error", 1, f"could not load the decoder, nothing was decoded: {codec_error}")
    degenerate = stats["degenerate_rows"]
    if degenerate["count"]:
        add("degenerate_rows", "warning", degenerate["count"], f"{degenerate['count']} row(s) repeat one token id over "
            "the whole row: " + ", ".join(f"{r['id']}#{r['chunk_index']} ({'/'.join(r['streams'])})"
                                          for r in degenerate["rows"][:5]))
    mismatches = stats["length_mismatches"]
    if mismatches["count"]:
        add("length_mismatch", "error", mismatches["count"], f"{mismatches['count']} row(s) with inconsistent "
            "lengths: " + "; ".join(f"{r['id']}#{r['chunk_index']}: {r['reasons'][0]}" for r in mismatches["rows"][:5]))
    oov = stats["out_of_vocab_rows"]
    if oov["count"]:
        add("out_of_vocab", "error", oov["count"], f"{oov['count']} row(s) hold token ids outside the vocabulary "
            f"({oov['tokens']['semantic']} semantic, {oov['tokens']['acoustic']} acoustic tokens): " +
            ", ".join(f"{r['id']}#{r['chunk_index']} max {r['max_ids']}" for r in oov["rows"][:5]))
    if uris["count"]:
        add("unknown_uri", "error", uris["count"], f"{uris['count']} row(s) point at audio that does not exist or "
            "cannot be addressed: " + ", ".join(f"{r['id']} ({r['status']}: {r['uri']})" for r in uris["rows"][:5]))
    if uris["unchecked_rows"]:
        outside = uris.get("outside_rule_rows", 0)
        add("uris_unchecked", "info", uris["unchecked_rows"], f"{uris['unchecked_rows']} row(s) whose uri was not "
            "checked (listing limit or error" + (f"; {outside} outside the corpus folder and every "
                                                 "--allow-uri-prefix: the URI rule" if outside else "") + ")")
    if failures["count"]:
        add("failures", "warning", failures["count"], f"{failures['count']} input(s) failed to tokenize: " +
            ", ".join(f"{k} {v}" for k, v in failures["by_type"].items()))
    _pick_flags(add, settings, stats, picks)
    return sorted(flags, key=lambda flag: SEVERITY_ORDER[flag["severity"]])


def _pick_flags(add, settings: dict, stats: dict, picks: list[dict]) -> None:
    """The flags of the decoded picks, and of the corpus's token rate."""
    bad = [s for s in picks if s["status"] in ("bad_tokens", "decode_failed", "no_tokens")]
    if bad:
        add("decode_errors", "error", len(bad), f"{len(bad)} sampled row(s) could not be decoded: " +
            "; ".join(f"{s['id']}: {s['error']}" for s in bad[:5]))
    unavailable = [s for s in picks if not s["original"]["available"]]
    if unavailable:
        add("original_unavailable", "info", len(unavailable), f"{len(unavailable)} sampled row(s) have no original "
            "audio to compare with: " + "; ".join(f"{s['id']}: {s['original']['reason']}" for s in unavailable[:5]))
    rate = stats["tokens_per_second"]["ratio_to_trim_aware_expected"]
    if rate is not None and abs(rate - 1) > TOKEN_RATE_TOLERANCE:
        add("tokens_per_second", "warning", 1, f"the corpus holds {rate:.3f}x the token pairs its durations give "
            f"at {settings['frame_rate']:g} pairs/s (official trim included)")


def report_exit_code(report: dict) -> int:
    """The exit code of a spot-check job: 1 when any flag is an error (the report is still written),
    else 0."""
    return ERROR_EXIT_CODE if any(flag["severity"] == "error" for flag in report.get("flags", ())) else 0
