"""Audio in: an input's bytes → mono 16 kHz chunks for the encoder (`load`), through libsndfile or
FFmpeg (`ffmpeg`), resampled in bounded memory with the codec's kernel (`resample`)."""
