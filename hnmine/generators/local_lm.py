"""A local Hugging Face causal LM through ``transformers``: batched, on the chosen device, seeded per sample.

Sampling is done with the Gumbel-max trick: each row of a batch adds Gumbel noise drawn from *its own*
``torch.Generator`` (seeded by the request) to its temperature-scaled, top-p-filtered logits, and the
decoder takes the arg-max. That is an exact draw from the same distribution as ``do_sample=True``, but a
sample no longer depends on which other prompts share its batch, so a resumed run, a changed chunk size or a
cache miss in the middle of a batch all give the same text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hnmine.engines.encoder import looks_like_missing_path, model_fingerprint
from hnmine.generators import GenerationError, GenerationRequest, Sampling


@lru_cache(maxsize=1)
def load_causal_lm(name: str, device: str | None) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if looks_like_missing_path(name):
        raise GenerationError(f"generator {name!r}: path not found")
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype="auto" if target.type == "cuda" else torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenerationError(f"generator {name!r}: could not be loaded as a causal LM ({first})") from None
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.to(target).eval()
    return tokenizer, model, target


def _gumbel_sampler(temperature: float, top_p: float, generators: list[Any]) -> Any:
    import torch
    from transformers import LogitsProcessor

    class SeededGumbelSampler(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            scores = scores.float() / temperature
            if top_p < 1.0:
                sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
                probs = sorted_scores.softmax(dim=-1)
                outside = probs.cumsum(dim=-1) - probs > top_p  # the most likely token always stays
                scores = scores.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
            noise = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in generators])
            gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
            return scores + gumbel.to(scores.device)

    return SeededGumbelSampler()


class LocalCausalLM:
    def __init__(self, model: str, sampling: Sampling, device: str | None = None, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise GenerationError(f"--generator-batch-size must be >= 1, got {batch_size}")
        self.model, self.sampling, self.device, self.batch_size = model, sampling, device, batch_size

    def identity(self) -> str:
        return f"hf:{model_fingerprint(self.model)}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "model": self.model, "device": self.device, "batch_size": self.batch_size}

    def check(self) -> None:
        load_causal_lm(self.model, self.device)

    def _prompt_text(self, tokenizer: Any, prompt: str) -> str:
        """Instruction-tuned models get their chat template; base models the plain prompt."""
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        return prompt

    def generate(self, requests: list[GenerationRequest]) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tokenizer, model, target = load_causal_lm(self.model, self.device)
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        max_input = limit - self.sampling.max_new_tokens if limit else None
        if max_input is not None and max_input < 16:
            raise GenerationError(f"generator {self.model!r}: --max-new-tokens {self.sampling.max_new_tokens} leaves "
                                  f"no room for the prompt in the model's {limit} positions")
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None \
            else tokenizer.eos_token_id
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=self.sampling.max_new_tokens,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        texts: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            tokenizer.truncation_side = "left"  # keep the end of the prompt, where the instruction to answer is
            enc = tokenizer([self._prompt_text(tokenizer, r.prompt) for r in batch], return_tensors="pt",
                            padding=True, truncation=max_input is not None, max_length=max_input).to(target)
            generators = [torch.Generator().manual_seed(r.seed) for r in batch]
            sampler = _gumbel_sampler(self.sampling.temperature, self.sampling.top_p, generators)
            with torch.inference_mode():
                out = model.generate(**enc, generation_config=config, logits_processor=LogitsProcessorList([sampler]))
            new_tokens = out[:, enc["input_ids"].shape[1]:]
            texts.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return texts
