"""Language-model policies over checkpoints: BC, and the Q-SFT and ILQL extracted policies.

    BC:     pi(a|s) = pi_beta(a|s)       (also any checkpoint played as it is: filtered BC, SPO's pi_theta)
    Q-SFT:  pi(a|s) ∝ pi_beta(a|s) * exp(beta * p_theta(a|s))          (pipeline.extraction)
    ILQL:   pi(a|s) ∝ pi_beta(a|s) * exp(beta * (Q(s,a) - V(s)))       (the checkpoint's value heads)

Both act token by token in the turn format of `pipeline.tokenize`: the context is the episode so far,
decoded with the models' KV caches until <|eot|> (text) or for the action's fixed number of bin tokens,
restricted to bin tokens (pixel tasks, whose contexts also carry their observations for the <|obs|>
tokens), or to the tokens that continue a word of the task's lexicon (Wordle). Restricted, pi_beta is
the model's distribution renormalised over the allowed tokens (constrained decoding). Tasks with admissible
actions choose among the candidates instead (`rank_many`: pi_beta of the whole candidate and Q read at its
last token).

Each game carries a `PrefixCache` from turn to turn, so a turn prefills only what the context gained
(the action and the new observation). Several games are served in one forward: their cached keys
left-padded to one width, their new tokens (and candidates) in a block after them, with an attention
mask (`block_mask`) that lets each candidate see its context and its own tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from pipeline.algorithm import action_support
from pipeline.candidates import constrained_log_probs, continuations, trie
from pipeline.config import Ranking
from pipeline.extraction import extracted_log_probs, ilql_log_probs, on_support
from pipeline.models import load_model, load_tokenizer, load_value_heads
from pipeline.tokenize import ActionCodec, TurnCodec, make_codec


@dataclass(frozen=True)
class PolicySpec:
    """What to load: `checkpoint` alone is that checkpoint's own policy (BC, or filtered BC or SPO, named by
    `label`); with `q` (and `checkpoint` the BC checkpoint, pi_beta) it is Q-SFT extraction, or ILQL's with
    `extraction="ilql"` (`q` then an ILQL checkpoint, whose value heads are read)."""

    checkpoint: str
    q: str | None = None
    extraction: Literal["qsft", "ilql"] = "qsft"
    label: str = ""
    beta: float = 4.0
    ratio_form: bool = False
    support_eps: float = 0.0
    temperature: float = 0.0
    ranking: Ranking = "sequence"
    greedy_text: bool = False
    max_action_tokens: int = 24

    @property
    def name(self) -> str:
        if self.q is None:
            return self.label or "bc"
        if self.extraction == "ilql":
            return f"ilql(beta={self.beta:g})"
        return f"qsft(beta={self.beta:g}{', ratio' if self.ratio_form else ''})"

    @classmethod
    def from_config(cls, cfg, checkpoint: str, q: str | None = None, extraction: str = "qsft", label: str = ""
                    ) -> PolicySpec:
        """A checkpoint's own policy (no `q`) or an extraction with an EvalConfig's decoding and extraction settings;
        an extraction always reads pi_beta's support, a checkpoint's own policy where `cfg.sample_support`."""
        support_eps = cfg.support_eps if q is not None or cfg.sample_support else 0.0
        return cls(checkpoint=checkpoint, q=q, extraction=extraction, label=label, beta=cfg.beta,
                   ratio_form=cfg.ratio_form, support_eps=support_eps, temperature=cfg.temperature,
                   ranking=cfg.ranking, greedy_text=cfg.greedy_text, max_action_tokens=cfg.max_action_tokens)

    @classmethod
    def of_stage(cls, cfg, stage: str, checkpoint: str, bc_checkpoint: str) -> PolicySpec:
        """The policy a trained stage offers, with an EvalConfig's settings: Q-SFT's and ILQL's extraction from
        the BC checkpoint, else (BC, filtered BC, SPO) the stage's own checkpoint."""
        if stage in ("qsft", "ilql"):
            return cls.from_config(cfg, bc_checkpoint, checkpoint, extraction=stage)
        return cls.from_config(cfg, checkpoint, label=stage)


class Segment(NamedTuple):
    """Token ids of part of an episode, with the live observations of its <|obs|> tokens (pixel tasks)."""

    ids: list[int]
    observations: tuple = ()


@dataclass
class PrefixCache:
    """What the models have encoded of one game's context: its token ids and, per model (pi_beta, then the q
    model if any), each layer's (keys, values) of those tokens, (heads, len(ids), head_dim) each."""

    ids: list[int] = field(default_factory=list)
    layers: tuple = ()


@dataclass
class Batch:
    """Contexts run side by side: one batched KV cache per model, the (B, K) mask of its real entries
    (left padding, and candidates that later tokens must not see, are not), and each row's next position."""

    caches: list[DynamicCache]
    valid: torch.Tensor
    positions: torch.Tensor | None = None


class LMPolicy:
    """`task`: the task record, which picks the turn format (text, or pixels and action bins)."""

    def __init__(self, spec: PolicySpec, task: Any = None, device: str = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        tokenizer = load_tokenizer(spec.checkpoint)
        self.codec: TurnCodec | ActionCodec = make_codec(tokenizer, task) if task else TurnCodec(tokenizer)
        self.lm = load_model(spec.checkpoint, self.device)
        self.q = load_model(spec.q, self.device) if spec.q else None
        self.heads = load_value_heads(spec.q, self.device) if spec.q and spec.extraction == "ilql" else None
        self.models = [self.lm] + ([] if self.q is None else [self._q_call])
        self.pad_id = tokenizer.pad_token_id
        self.observation_id = getattr(self.codec, "observation_id", None)
        self.action_length = self.codec.action_length or spec.max_action_tokens
        self.max_context = self.lm.config.max_position_embeddings - self.action_length
        self.disallowed = None  # tokens that can never be part of an action
        if self.codec.action_token_ids is not None:
            self.disallowed = torch.ones(len(tokenizer), dtype=torch.bool, device=self.device)
            self.disallowed[list(self.codec.action_token_ids)] = False
        lexicon = getattr(task, "lexicon", None)
        self.lexicon = trie([self.codec.action_ids(a) for a in lexicon()]) if lexicon else None

    def segment(self, observation: Any, action: Any = None) -> Segment:
        """The segment an environment step adds: the action taken (if any), then the new observation."""
        ids = ([] if action is None else self.codec.action_ids(action)) + self.codec.observation_ids(observation)
        return Segment(ids, (observation,) if isinstance(self.codec, ActionCodec) else ())

    def context(self, segments: list[Segment]) -> Segment:
        """The episode's segments as one context: the task prompt plus as many recent turns as fit."""
        head, tail = segments[0], []
        if len(head.ids) > self.max_context:
            if head.observations:
                raise ValueError(f"a first observation of {len(head.ids)} tokens exceeds the context")
            head = Segment(head.ids[: self.max_context])
        used = len(head.ids)
        for segment in reversed(segments[1:]):
            if used + len(segment.ids) > self.max_context:
                break
            tail.insert(0, segment)
            used += len(segment.ids)
        kept = [head, *tail]
        return Segment([i for s in kept for i in s.ids], tuple(o for s in kept for o in s.observations))

    # --------------------------------------------------------------------------------- distribution
    def _log_probs(self, pi_beta_logits: torch.Tensor, q_scores, disallowed: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """`q_scores`: None (BC), p_theta's logits (Q-SFT) or ILQL's (Q, V) (see `_q_scores`); `disallowed`:
        (B, V) tokens no action may take next (the lexicon's), else the task's fixed ones."""
        disallowed = self.disallowed if disallowed is None else disallowed
        if disallowed is not None:
            pi_beta_logits = pi_beta_logits.masked_fill(disallowed, -torch.inf)
        if q_scores is None:
            log_beta = F.log_softmax(pi_beta_logits.float(), dim=-1)
            return on_support(log_beta, self.spec.support_eps) if self.spec.support_eps > 0 else log_beta
        if self.heads is not None:
            return ilql_log_probs(pi_beta_logits, *q_scores, self.spec.beta)
        return extracted_log_probs(pi_beta_logits, q_scores, self.spec.beta, self.spec.ratio_form,
                                   self.spec.support_eps)

    def _q_scores(self, output, rows, positions):
        """The q model's output at (rows, positions): its logits (Q-SFT), or its value heads on the final
        hidden states (ILQL)."""
        if self.heads is None:
            return output.logits[rows, positions]
        return self.heads(output.hidden_states[-1][rows, positions])

    def _q_call(self, **inputs):
        return self.q(**inputs, output_hidden_states=self.heads is not None)

    def _observation_inputs(self, observations: list[Any]) -> dict[str, torch.Tensor]:
        """A pixel model's packed images and proprioception, in the row-major order of the <|obs|> tokens."""
        if not observations:
            return {}
        images = np.stack([np.asarray(o["image"], dtype=np.uint8) for o in observations])
        proprio = np.stack([ActionCodec.proprio(o) for o in observations])
        return {"images": torch.from_numpy(images).to(self.device),
                "proprio": torch.from_numpy(proprio).to(self.device)}

    # ------------------------------------------------------------------------------ cached forwards
    def _stack(self, caches: list[PrefixCache], keep: list[int]) -> Batch:
        """The first keep[b] cached tokens of each context, left-padded to one width: one batched cache per model."""
        width = max(keep)
        valid = torch.arange(width, device=self.device) >= (width - torch.tensor(keep, device=self.device))[:, None]
        template = next((c.layers for c, k in zip(caches, keep) if k), None)
        if template is None:
            return Batch([DynamicCache() for _ in self.models], valid)

        def padded(m: int, layer: int, part: int) -> torch.Tensor:
            like = template[m][layer][part]
            return torch.stack([F.pad(c.layers[m][layer][part][:, :k], (0, 0, width - k, 0)) if k else
                                like.new_zeros(like.shape[0], width, like.shape[2]) for c, k in zip(caches, keep)])

        return Batch([DynamicCache(ddp_cache_data=[(padded(m, layer, 0), padded(m, layer, 1))
                                                   for layer in range(len(template[m]))])
                      for m in range(len(self.models))], valid)

    def _run(self, batch: Batch, ids: torch.Tensor, groups: torch.Tensor, positions: torch.Tensor,
             observations: list[Any] = ()) -> list[Any]:
        """Each model's output on a block of new tokens (B, Q) after the batch's cache (see `block_mask`); the
        block's group-0 tokens stay visible to later blocks."""
        mask = block_mask(batch.valid, groups, self.lm.dtype)
        inputs = self._observation_inputs(list(observations))
        outs = [model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                      **inputs) for model, cache in zip(self.models, batch.caches)]
        batch.valid = torch.cat([batch.valid, groups == 0], dim=1)
        return outs

    def _encode(self, contexts: list[Segment], caches: list[PrefixCache], branches: list[list[list[int]]] | None = None
                ) -> tuple[list[Any], Batch, list[int]]:
        """One forward of each model over the tokens of every context that its cache lacks, then (ranking) the
        context's `branches`, each continuing the context on its own; the caches then hold the contexts.

        A cache keeps the longest prefix it shares with its context (all of it when the context grew by a turn,
        the task prompt when truncation dropped a turn), less the context's last token, whose logits are read.
        Returns the outputs, the batch (to decode from) and each context's number of new tokens n_b: its last
        token sits at block index n_b - 1, its branches follow one after another."""
        branches = branches or [[] for _ in contexts]
        keep = [min(common_prefix(c.ids, x.ids), len(x.ids) - 1) for c, x in zip(caches, contexts)]
        batch = self._stack(caches, keep)
        blocks, groups, positions, observations = [], [], [], []
        for context, k, rests in zip(contexts, keep, branches):
            new = context.ids[k:]
            blocks.append(new + [t for rest in rests for t in rest])
            groups.append([0] * len(new) + [g + 1 for g, rest in enumerate(rests) for _ in rest])
            positions.append(list(range(k, len(context.ids))) + [t for rest in rests for t in
                                                                 range(len(context.ids), len(context.ids) + len(rest))])
            shown = sum(i == self.observation_id for i in new)
            observations.extend(context.observations[len(context.observations) - shown:] if shown else ())
        width = max(map(len, blocks))
        ids, group_ids, position_ids = (torch.tensor([r + [fill] * (width - len(r)) for r in lists], device=self.device)
                                        for lists, fill in ((blocks, self.pad_id), (groups, -1), (positions, 0)))
        outs = self._run(batch, ids, group_ids, position_ids, observations)
        for b, (cache, context) in enumerate(zip(caches, contexts)):
            kept = batch.valid[b].nonzero()[:, 0]
            cache.ids = list(context.ids)
            cache.layers = tuple([(layer.keys[b][:, kept], layer.values[b][:, kept]) for layer in c.layers]
                                 for c in batch.caches)
        batch.positions = torch.tensor([len(c.ids) for c in contexts], device=self.device)
        return outs, batch, [len(c.ids) - k for c, k in zip(contexts, keep)]

    def _prefill(self, contexts: list[Segment], caches: list[PrefixCache], disallowed: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, Batch]:
        """log pi(.|s) at the end of each context, and the batch to decode from."""
        outs, batch, new = self._encode(contexts, caches)
        rows, last = torch.arange(len(contexts), device=self.device), torch.tensor(new, device=self.device) - 1
        q_scores = None if self.q is None else self._q_scores(outs[1], rows, last)
        return self._log_probs(outs[0].logits[rows, last], q_scores, disallowed), batch

    def _step(self, batch: Batch, tokens: torch.Tensor, disallowed: torch.Tensor | None = None) -> torch.Tensor:
        """log pi(.|s, token) after one more token per row, appended to the batch's caches."""
        outs = self._run(batch, tokens[:, None], torch.zeros_like(tokens)[:, None], batch.positions[:, None])
        batch.positions = batch.positions + 1
        q_scores = None if self.q is None else self._q_scores(outs[1], slice(None), -1)
        return self._log_probs(outs[0].logits[:, -1], q_scores, disallowed)

    def _outside_lexicon(self, written: torch.Tensor) -> torch.Tensor | None:
        """(B, V): True for the tokens that continue no lexicon action after each row's `written` tokens (a row
        that has ended may only repeat <|eot|>); None without a lexicon."""
        if self.lexicon is None:
            return None
        mask = torch.ones(len(written), self.lm.config.vocab_size, dtype=torch.bool)
        for b, prefix in enumerate(written.tolist()):
            mask[b, self.lexicon.get(tuple(prefix), [self.codec.eot_id])] = False
        return mask.to(self.device)

    # ------------------------------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, contexts: list[Segment], generators: list[torch.Generator] | None = None,
                 caches: list[PrefixCache] | None = None) -> list[Any]:
        """One agent turn for each context (the episode so far): greedy or sampled; the env's action.

        With `caches` (one per game, carried across its turns) only the tokens new since the last call are
        prefilled; the turn's own tokens are decoded through the batch's cache and not kept (the next context
        holds the action as the env received it)."""
        eot = self.codec.eot_id
        out = torch.full((len(contexts), self.action_length), self.pad_id if eot is None else eot, dtype=torch.long)
        log_probs, batch = self._prefill(contexts, caches or [PrefixCache() for _ in contexts],
                                         self._outside_lexicon(out[:, :0]))
        done = torch.zeros(len(contexts), dtype=torch.bool)
        for t in range(self.action_length):
            token = self._choose(log_probs, generators)
            if eot is not None:
                token[done] = eot
                done |= token.cpu() == eot
            out[:, t] = token.cpu()
            if t == self.action_length - 1 or bool(done.all()):
                break
            log_probs = self._step(batch, token, self._outside_lexicon(out[:, : t + 1]))
        return [self.codec.decode_action(row.tolist()) for row in out]

    def _choose(self, log_probs: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
        if self.spec.temperature <= 0 or self.spec.greedy_text:
            return log_probs.argmax(-1)
        probs = (log_probs / self.spec.temperature).softmax(-1).cpu()
        return torch.stack([torch.multinomial(p, 1, generator=None if generators is None else g)[0]
                            for p, g in zip(probs, generators or [None] * len(probs))]).to(self.device)

    # -------------------------------------------------------------------------------------- ranking
    def rank(self, context: Segment, candidates: list[str], cache: PrefixCache | None = None) -> list[float]:
        """`rank_many` for one context."""
        return self.rank_many([context], [candidates], None if cache is None else [cache])[0]

    @torch.no_grad()
    def rank_many(self, contexts: list[Segment], candidates: list[list[str]],
                  caches: list[PrefixCache] | None = None) -> list[list[float]]:
        """log pi(a|s) of each candidate action (its text + <|eot|>) after its context, up to a constant shared by
        the context's candidates (text tasks with admissible actions):

            BC:     log pi_beta(a|s) = sum_t log pi_beta(a_t | s, a_<t)
            Q-SFT:  log pi_beta(a|s) + beta * Q(s,a)
            ILQL:   log pi_beta(a|s) + beta * (Q(s,a) - V(s))

        With `ranking="token"` pi_beta(a|s) is constrained decoding's instead (`candidates.constrained_log_probs`):
        each token renormalised over the tokens that continue some candidate there. A model that cannot copy an
        ID spreads its probability over every ID, so "sequence" gives a copied ID ~ 36^-6 while "token" gives
        it the share of the first token that starts the candidates' IDs.

        Q(s,a) is read at the candidate's last token a_L, the token that carries the turn's reward and bootstrap:
        Q-SFT's p_theta(a_L | s, a_<L) / pi_beta(a_L | s, a_<L) (ratio form) or p_theta(a_L | s, a_<L) (paper
        form), ILQL's Q head at a_L (and V its value head at s). After a complete action pi_beta(<|eot|>) ~ 1, so
        Q-SFT's value is not divided by the candidate's own small and imprecise pi_beta(a|s), as the token-level
        ratio at its first token is; and summing token-level extracted log-probabilities instead would favour the
        shortest candidate wherever the model is unsure. With `support_eps` (always for an extraction, for BC where
        chosen), candidates with pi_beta(a|s) <= support_eps, normalised over the candidates, score -inf (the most
        likely always stays), as tokens do in `extracted_log_probs` and `on_support`.

        All contexts and candidates go through one forward per model: each context's new tokens (with `caches`,
        those since the last call) and then its candidates a_<L side by side, each attending to the context only.
        """
        actions = [[self.codec.action_ids(c) for c in cands] for cands in candidates]
        outs, _, new = self._encode(contexts, caches or [PrefixCache() for _ in contexts],
                                    [[a[:-1] for a in acts] for acts in actions])
        rows, reads, tokens, owner, last, state = [], [], [], [], [], []   # per action token / per candidate
        for b, acts in enumerate(actions):
            start = new[b]
            for action in acts:
                reads_a = [new[b] - 1, *range(start, start + len(action) - 1)]
                start += len(action) - 1
                last.append(len(reads) + len(action) - 1)
                rows += [b] * len(action)
                reads += reads_a
                tokens += action
                owner += [len(state)] * len(action)
                state.append(b)
        rows, reads, tokens = (torch.tensor(x, dtype=torch.long, device=self.device) for x in (rows, reads, tokens))
        last = torch.tensor(last, dtype=torch.long, device=self.device)
        logits = outs[0].logits[rows, reads].float()
        if self.disallowed is not None:
            logits = logits.masked_fill(self.disallowed, -torch.inf)
        log_beta = F.log_softmax(logits, dim=-1)
        token_log_beta = log_beta.gather(-1, tokens[:, None])[:, 0]
        ranked = token_log_beta if self.spec.ranking == "sequence" else constrained_log_probs(
            log_beta, tokens, [t for acts in actions for t in continuations(acts)])
        scores = torch.zeros(len(state), device=self.device).index_add_(
            0, torch.tensor(owner, dtype=torch.long, device=self.device), ranked)
        if self.q is not None:
            values = self._candidate_values(outs[1], rows[last], reads[last], tokens[last], token_log_beta[last],
                                            torch.tensor(new, device=self.device)[rows[last]] - 1)
        out, offset = [], 0
        for acts in actions:
            game = scores[offset: offset + len(acts)]
            if self.spec.support_eps > 0 and len(acts):
                game = game.masked_fill(~action_support(game, self.spec.support_eps), -torch.inf)
            if self.q is not None and len(acts):
                game = game + self.spec.beta * values[offset: offset + len(acts)]
            out.append(game.tolist())
            offset += len(acts)
        return out

    def _candidate_values(self, q_out, rows: torch.Tensor, reads: torch.Tensor, tokens: torch.Tensor,
                          last_log_beta: torch.Tensor, state_reads: torch.Tensor) -> torch.Tensor:
        """Q(s,a) read at each candidate's last token (Q-SFT), or ILQL's advantage Q(s,a) - V(s); `reads` and
        `state_reads`: the block indices where a_L and the context's next token are predicted."""
        if self.heads is not None:
            q_values, _ = self._q_scores(q_out, rows, reads)
            _, value = self._q_scores(q_out, rows, state_reads)
            return q_values.gather(-1, tokens[:, None])[:, 0].float() - value.float()
        log_p = F.log_softmax(q_out.logits[rows, reads].float(), dim=-1).gather(-1, tokens[:, None])[:, 0]
        return (log_p - last_log_beta).exp() if self.spec.ratio_form else log_p.exp()

    def choose(self, scores: list[float], generator: torch.Generator | None = None) -> int:
        """The index of the candidate to take: the best score (temperature 0), or one sampled from
        softmax(scores / temperature)."""
        if self.spec.temperature <= 0:
            return int(np.argmax(scores))
        probs = (torch.tensor(scores, dtype=torch.float64) / self.spec.temperature).softmax(-1)
        return int(torch.multinomial(probs, 1, generator=generator)[0])


def common_prefix(a: list[int], b: list[int]) -> int:
    """The length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def block_mask(past: torch.Tensor, groups: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive (B, 1, Q, K + Q) attention mask of a block of Q new tokens after K cached ones.

    A block token attends to the valid cached tokens (`past`, (B, K) bool) and, causally, to the block's
    tokens of group 0 (the context's new tokens, shared) and of its own group (one candidate's tokens, which
    no other candidate sees); group -1 is padding, which only pads see."""
    q = groups.shape[1]
    causal = torch.ones(q, q, dtype=torch.bool, device=groups.device).tril()
    visible = (groups[:, :, None] == groups[:, None, :]) | (groups[:, None, :] == 0)
    allowed = torch.cat([past[:, None, :].expand(-1, q, -1), visible & causal], dim=-1)
    return torch.zeros(allowed.shape, dtype=dtype, device=groups.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]
