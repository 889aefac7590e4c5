"""What a newcomer gets wrong is named in a warning: prompt words a closed-vocabulary tokenizer (the moving-shapes
demos') does not know, and float16 models on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers.utils import logging as diffusers_logging
from transformers import AutoTokenizer, CLIPTokenizer

from diffusers_video import VideoFusionPipeline
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.pipelines.prompts import CLOSED_VOCABULARY_SIZE, unknown_words, warn_unknown_words

DEMO_TOKENIZERS = ("pipelines/videofusion/demo/tokenizer", "pipelines/imagen_video/demo/tokenizer")


@pytest.mark.parametrize("folder", DEMO_TOKENIZERS)
def test_the_demo_tokenizers_know_every_word_of_the_world_and_name_the_others(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    world = ShapesWorld(height=32, width=32, num_frames=8, split="heldout")
    for index in range(300):
        scene = world.scene(index)
        assert unknown_words(tokenizer, scene.caption) == [] and unknown_words(tokenizer, scene.still_caption) == []
    assert unknown_words(tokenizer, "A Purple hexagon moving RIGHT, zooming purple") == [
        "purple",
        "hexagon",
        "zooming",
    ]


def test_an_open_vocabulary_knows_every_word():
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"w{i}</w>": i + 2 for i in range(CLOSED_VOCABULARY_SIZE)}}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    assert len(tokenizer) > CLOSED_VOCABULARY_SIZE
    assert unknown_words(tokenizer, "a purple hexagon") == []


def test_the_warning_names_the_unknown_words_of_prompts_and_negative_prompts(caplog):
    tokenizer = AutoTokenizer.from_pretrained(DEMO_TOKENIZERS[0])
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            warn_unknown_words(tokenizer, ["a red circle moving left", "an orange blob"])
            warn_unknown_words(tokenizer, "a red circle moving left")
            warn_unknown_words(tokenizer, "blurry", "negative_prompt")
    finally:
        diffusers_logging.disable_propagation()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "`prompt` has words" in messages[0] and "'orange', 'blob'" in messages[0] and "204-token" in messages[0]
    assert "`negative_prompt`" in messages[1] and "'blurry'" in messages[1]


def test_float16_on_the_cpu_is_named_in_a_warning(caplog):
    pipe = VideoFusionPipeline.from_pretrained("pipelines/videofusion/demo", torch_dtype=torch.float32)
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            pipe.to(torch.bfloat16)
            assert "float16 on the CPU" not in caplog.text
            pipe.to(torch.float16)
    finally:
        diffusers_logging.disable_propagation()
    message = next(record.getMessage() for record in caplog.records if "float16 on the CPU" in record.getMessage())
    assert message.startswith("vae, text_encoder, residual_unet, base_unet are float16 on the CPU")
