"""Load decoder.ckpt (official layout) into a SemantiCodecDecoder; the EMA copy is ignored."""

from __future__ import annotations

from ...errors import CheckpointError
from .checkpoint import CheckpointSource, describe_file, load_state_dict, resolve_checkpoint
from .decoder import DiffusionSchedule, SemantiCodecDecoder
from .unet import UNetModel
from .vae import VAEDecoder
from .variants import SemantiCodecVariant
from .vocoder import HifiGanVocoder


def load_decoder(source: CheckpointSource, variant: SemantiCodecVariant, encoder, device: str):
    """(decoder on `device`, LoadedFile of decoder.ckpt). The codebooks come from the encoder;
    decoder.ckpt is taken from the layout (and hub commit) the encoder was loaded from."""
    resolved = resolve_checkpoint(source, variant, need_decoder=True)
    path = source.fetch(resolved.files["decoder"])
    state = load_state_dict(path)
    try:
        unet = UNetModel.from_state_dict(state)
        vae = VAEDecoder.from_state_dict(state)
        vocoder = HifiGanVocoder.from_state_dict(state)
        schedule = DiffusionSchedule.from_state_dict(state)
        scale_factor = float(state["scale_factor"])
    except (KeyError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"{path} does not fit the {variant.name} decoder: {error}") from error
    expected = 2 * encoder.config.feature_dim + 192
    if unet.context_dim != expected:
        raise CheckpointError(
            f"{path}: UNet cross-attention takes {unet.context_dim} features, the {variant.name} "
            f"encoder gives {expected}: not the decoder of this variant"
        )
    decoder = SemantiCodecDecoder(unet, vae, vocoder, schedule, scale_factor,
                                  encoder.semantic_codebook, encoder.acoustic_codebook)
    return decoder.to(device), describe_file(path)
