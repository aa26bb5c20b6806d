"""VIME (Yoon et al. 2020) for cells: masked self-supervised encoder, then a semi-supervised, self-training predictor."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ...base.archive import read_npz
from ...prep.transforms import Scaler
from . import Progress, ShouldStop, check_stop, encode_labels, report, softmax
from .baselines import booster_probs
from .experts import DEFAULT_SHARES, EXPERT_NAMES, PROBABILITY_FLOOR, fit_experts, log_softmax
from .pseudo_labels import select_pseudo_labels

FINAL_PARTS = ("network", "linear pair", "booster")
# The network's weight in the final call by labels per population, chosen on the dev suite (bench/blend_weights.py,
# 8 sets × 3 budgets × 3 seeds) and checked by leaving each set out of the choice (BENCHMARKS.md): it grows by
# NETWORK_WEIGHT_STEP per doubling of the labels from NETWORK_WEIGHT_RANGE[0] at FEW_LABELS labels per population, up to
# NETWORK_WEIGHT_RANGE[1]. The experts share the rest as chosen on the user's own labels (experts.choose_shares).
FEW_LABELS = 5
NETWORK_WEIGHT_STEP = 0.1
NETWORK_WEIGHT_RANGE = (0.1, 0.3)
PREDICT_CHUNK = 65_536  # cells per inference chunk: bounds the memory of the three probability tables
EXPERT_STEPS = 150  # progress weight of the experts, in training steps (their share of a fit on the demo)


def network_weight_for(labels_per_population: float) -> float:
    """The network's default weight for a median of `labels_per_population` labels: with a handful the experts carry
    the call; with every doubling the network, which learns from the unlabelled cells, earns more of it (0.1 at 5,
    0.2 at 10, 0.3 from 20)."""
    doublings = np.log2(max(labels_per_population, 1.0) / FEW_LABELS)
    low, high = NETWORK_WEIGHT_RANGE
    return round(float(np.clip(low + NETWORK_WEIGHT_STEP * doublings, low, high)), 4)


def final_weights_for(labels_per_population: float, shares: tuple[float, float, float] = DEFAULT_SHARES) -> list[float]:
    """The default weights of (network, linear pair, booster): the network's by the labels per population, the rest
    split by the experts' shares (LDA, logistic regression, booster)."""
    network = network_weight_for(labels_per_population)
    linear = round((1.0 - network) * (shares[0] + shares[1]), 4)
    return [network, linear, round(1.0 - network - linear, 4)]


@dataclass
class VIMEParams:
    """Every VIMEClassifier hyperparameter; JSON-serialisable so bundles record exactly what was trained."""

    p_m: float = 0.3  # corruption (mask) probability
    alpha: float = 2.0  # weight of the reconstruction loss in self-supervision
    beta: float = 1.0  # weight of the consistency loss (variance over K corrupted copies)
    k: int = 2  # corrupted copies per unlabelled cell
    entropy_weight: float = 0.1  # weight of entropy minimisation on unlabelled cells
    encoder_sizes: list[int] = field(default_factory=lambda: [128])
    predictor_sizes: list[int] = field(default_factory=lambda: [128])
    skip_input: bool = True  # predictor also sees the scaled input beside the encoding
    pretrain_steps: int = 200
    pretrain_batch: int = 512
    semi_steps: int = 300  # predictor steps per self-training round
    rounds: int = 3  # self-training rounds; pseudo-labels are refreshed between rounds
    batch_labeled: int = 256
    batch_unlabeled: int = 128
    learning_rate: float = 1e-3
    pseudo_threshold: float = 0.8  # minimum confidence of a pseudo-label
    pseudo_fraction: float = 0.8  # share of each predicted class (most confident first) taken as pseudo-labels
    pseudo_cap: int = 2000  # most pseudo-labels per class
    pseudo_weight: float = 1.0  # loss weight of pseudo-labelled cells relative to labelled ones
    # final probabilities: weighted geometric mean of the network, the linear pair (LDA + logistic regression, logits
    # weighted by their shares) and the booster, in that order (FINAL_PARTS); None: the network's weight by the labels
    # per population (network_weight_for), the rest split by the experts' out-of-fold shares
    final_weights: list[float] | None = None
    final_blend: str = "geometric"  # or 'arithmetic': the weighted mean that bundles saved before December 2026 used
    balanced: bool = True  # sample classes uniformly in every batch (rare populations)
    ensemble: int = 1  # independently initialised predictors averaged
    max_unlabeled: int = 50_000  # unlabelled cells subsampled for training
    threads: int = 2
    progress_every: int = 50
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VIMEParams":
        """Parameters from a bundle; keys of retired training options (older bundles) are dropped, since applying a
        model depends only on its saved weights and architecture (a bundle records the weights it was trained with).
        Bundles saved before the geometric blend keep their arithmetic one: (1 - x)·((1 - t)·network + t·linear) + x·booster."""
        known = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in d.items() if k in known}
        if "final_weights" not in d:
            t, x = float(d.get("final_teacher_weight", 0.5)), float(d.get("final_xgb_weight", 1 / 3))
            kept.update(final_weights=[(1 - x) * (1 - t), (1 - x) * t, x], final_blend="arithmetic")
        return cls(**kept)


# ---- masking and losses (TensorFlow; small pure functions so tests can check them by hand) ----

def corrupt(x, p_m: float, generator):
    """Mask entries with probability p_m and replace them by values from the same column of random rows.

    Returns (x_tilde, mask) where mask is 1 where the value actually changed, as in the VIME reference.
    """
    import tensorflow as tf

    n, d = tf.shape(x)[0], tf.shape(x)[1]
    m = tf.cast(generator.uniform(tf.shape(x)) < p_m, x.dtype)
    rows = generator.uniform(tf.shape(x), 0, n, dtype=tf.int32)
    flat = rows * d + tf.range(d)[tf.newaxis, :]
    x_bar = tf.gather(tf.reshape(x, [-1]), flat)
    x_tilde = x * (1.0 - m) + x_bar * m
    return x_tilde, tf.cast(tf.not_equal(x, x_tilde), x.dtype)


def mask_loss(mask, mask_logits):
    """Binary cross-entropy between the true mask and the mask head's logits (mean over entries)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=mask, logits=mask_logits))


def reconstruction_loss(x_target, x_hat):
    """Mean squared error between min–max-scaled inputs and their reconstruction."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(x_target - x_hat))


def consistency_loss(probs):
    """Variance of class probabilities across K corrupted copies (axis 0 of K × n × C), averaged."""
    import tensorflow as tf

    return tf.reduce_mean(tf.math.reduce_variance(probs, axis=0))


def entropy_loss(probs):
    """Mean prediction entropy −Σ p log p over cells; minimising it pushes boundaries into low-density gaps."""
    import tensorflow as tf

    return tf.reduce_mean(-tf.reduce_sum(probs * tf.math.log(probs + 1e-8), axis=1))


def weighted_cross_entropy(labels, logits, weights):
    """Cross-entropy averaged with per-cell weights (labelled 1, pseudo-labelled pseudo_weight)."""
    import tensorflow as tf

    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1e-8)


# ---- numpy inference (fast, no TensorFlow needed to apply a saved model) ----

def forward_logits(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, n_encoder: int, skip: bool) -> np.ndarray:
    """Logits of one member: ReLU dense layers, the input re-joined after the encoder when `skip`."""
    h = x
    for i, (w, b) in enumerate(layers[:-1]):
        h = h @ w
        h += b
        np.maximum(h, 0.0, out=h)
        if skip and i == n_encoder - 1:
            h = np.concatenate([h, x], axis=1)
    w, b = layers[-1]
    return h @ w + b


def fold_scaler(w: np.ndarray, b: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense layer on scaled cells rewritten for raw cells: ((x - offset) / scale) @ w + b == x @ w' + b'."""
    inv = 1.0 / np.asarray(scale, np.float64)
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    return np.ascontiguousarray(w * inv[:, None], np.float32), (b - (np.asarray(offset, np.float64) * inv) @ w).astype(np.float32)


class FusedNet:
    """Float32 inference of all members on raw (unscaled) cells with the scaler folded into the weights.

    Every member's first layer and its skip-input block after the encoder are rescaled so that x is used as is
    (no scaling pass, no concatenation); cells go through in large chunks.
    """

    def __init__(self, members, offset: np.ndarray, scale: np.ndarray, n_encoder: int, skip: bool, chunk: int = 8192):
        self.members = []
        for layers in members:
            first = fold_scaler(*layers[0], offset, scale)
            rest = []
            for i, (w, b) in enumerate(layers[1:], start=1):
                if skip and i == n_encoder:  # [h, s] @ w  ==  h @ w_h + x @ w_x'
                    d = len(offset)
                    wx, bx = fold_scaler(w[-d:], b, offset, scale)
                    rest.append((np.ascontiguousarray(w[:-d], np.float32), bx, wx))
                else:
                    rest.append((np.asarray(w, np.float32), np.asarray(b, np.float32), None))
            self.members.append((first, rest))
        self.chunk = chunk

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        n_classes = self.members[0][1][-1][0].shape[1] if self.members[0][1] else self.members[0][0][0].shape[1]
        out = np.empty((len(x), n_classes), np.float32)
        for start in range(0, len(x), self.chunk):
            xc = x[start:start + self.chunk]
            acc = None
            for (w0, b0), rest in self.members:
                h = xc @ w0
                h += b0
                np.maximum(h, 0.0, out=h)
                for j, (w, b, wx) in enumerate(rest):
                    z = h @ w
                    if wx is not None:
                        z += xc @ wx
                    z += b
                    if j < len(rest) - 1:
                        np.maximum(z, 0.0, out=z)
                    h = z
                p = softmax(h)
                acc = p if acc is None else acc + p
            if len(self.members) > 1:
                acc /= len(self.members)
            out[start:start + len(acc)] = acc
        return out


def blend(parts: list[np.ndarray], weights: list[float], kind: str) -> np.ndarray:
    """Combine probability tables with weights (renormalised to sum 1): 'geometric' is the softmax of the weighted
    mean log-probability (floored at 1e-6), 'arithmetic' the weighted mean."""
    if kind == "arithmetic":
        w = np.asarray(weights, np.float64) / np.sum(weights)
        return sum(np.float32(wi) * p for wi, p in zip(w, parts)).astype(np.float32, copy=False)
    if kind != "geometric":
        raise ValueError(f"unknown blend {kind!r}")
    return geometric_mean([np.log(p + np.float32(PROBABILITY_FLOOR)) for p in parts], weights)


def geometric_mean(log_parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The softmax of the weighted mean of log-probability tables (weights renormalised to sum 1)."""
    w = np.asarray(weights, np.float64) / np.sum(weights)
    return softmax(sum(np.float32(wi) * lp for wi, lp in zip(w, log_parts)))


class VIMEClassifier:
    """VIME encoder + semi-supervised predictor, self-trained on its own class-balanced pseudo-labels, blended with two
    few-label experts.

    The predictor network learns from the labels, then from its own confident predictions (pseudo-labels, refreshed
    every round) and from every unlabelled cell (consistency over masked copies, entropy minimisation). The experts
    (cytoauto_core.models.experts: a linear pair and a booster on the labels) share the final call with it.
    """

    kind = "vime"

    def __init__(self, params: VIMEParams | None = None) -> None:
        self.params = params or VIMEParams()
        self.classes_ = np.empty(0, np.int64)
        self.scaler = Scaler("standard")
        self.members: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self._fused: FusedNet | None = None
        self._linear_raw: tuple[np.ndarray, np.ndarray] | None = None  # linear pair folded onto raw cells
        self.linear_expert: tuple[np.ndarray, np.ndarray] | None = None  # the linear pair's kernel (d × C) and bias
        self.booster_expert = None  # XGBoost booster on scaled cells
        # the experts' shares (LDA, logistic regression, booster) chosen on the labels; None in bundles saved before
        # 5 December 2026, whose geometric blend floored the linear pair's probabilities like the other parts'
        self.expert_shares_: tuple[float, float, float] | None = None
        self.final_weights_: list[float] = list(self.params.final_weights or final_weights_for(FEW_LABELS))

    # -- public contract --

    def fit(
        self,
        x_labeled: np.ndarray,
        y: np.ndarray,
        x_unlabeled: np.ndarray | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> "VIMEClassifier":
        """Pretrain the encoder on all cells, fit the experts on the labels, then train the predictor in self-training
        rounds: the first on the labels alone, each later one also on the network's own pseudo-labels."""
        import keras

        p = self.params
        if p.final_weights is not None and (len(p.final_weights) != len(FINAL_PARTS) or min(p.final_weights) < 0
                                            or sum(p.final_weights) <= 0):
            raise ValueError(f"final_weights needs {len(FINAL_PARTS)} non-negative weights ({', '.join(FINAL_PARTS)}) "
                             f"with a positive one")
        _configure_tensorflow(p.threads)
        keras.utils.set_random_seed(p.seed)
        rng = np.random.default_rng(p.seed)
        self.classes_, yl = encode_labels(y)
        n_classes = len(self.classes_)
        xl = np.asarray(x_labeled, np.float32)
        xu = np.empty((0, xl.shape[1]), np.float32) if x_unlabeled is None else np.asarray(x_unlabeled, np.float32)
        if len(xu) > p.max_unlabeled:
            xu = xu[np.sort(rng.choice(len(xu), p.max_unlabeled, replace=False))]
        x_all = np.concatenate([xl, xu])
        self.scaler = Scaler("standard").fit(x_all, seed=p.seed)
        minmax = Scaler("minmax").fit(x_all, seed=p.seed)
        s_all, s_l = self.scaler.transform(x_all), self.scaler.transform(xl)
        s_u = self.scaler.transform(xu) if len(xu) else s_l
        target = np.clip(minmax.transform(x_all), 0.0, 1.0)
        clock = _Clock(p, progress, should_stop)

        encoder_weights = self._pretrain(s_all, target, clock)
        self.members, self._fused = [], None
        experts = fit_experts(s_l, yl, n_classes, p.seed, p.threads, progress=clock.stage(EXPERT_STEPS),
                              should_stop=should_stop)
        self.linear_expert, self.booster_expert = experts.linear, experts.booster
        self.expert_shares_ = tuple(round(float(v), 4) for v in experts.shares)
        self.final_weights_ = list(p.final_weights or final_weights_for(float(np.median(np.bincount(yl))), experts.shares))
        probs_u = None
        models = [self._build(xl.shape[1], n_classes, encoder_weights, p.seed + 1000 * (i + 1)) for i in range(p.ensemble)]
        for r in range(p.rounds):
            if probs_u is None:
                px, py = np.empty((0, s_l.shape[1]), np.float32), np.empty(0, np.int32)
            else:
                idx, py = select_pseudo_labels(probs_u, p.pseudo_threshold, p.pseudo_fraction, p.pseudo_cap)
                px = s_u[idx]
            for i, (_, _, step) in enumerate(models):
                self._train_round(step, s_l, yl, px, py, s_u, rng, clock, f"round {r + 1}/{p.rounds}, member {i + 1}")
            self.members = [[(k.numpy(), b.numpy()) for k, b in ((l.kernel, l.bias) for l in layers)] for _, layers, _ in models]
            probs_u = self._member_mean(s_u)
        report(progress, 1.0, "VIME: done")
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × n_classes, float32): the members' mean, the linear pair and the booster blended
        with the final weights (parts with weight 0 or absent from the model are skipped), in chunks of cells. The
        geometric blend takes the linear pair's exact log-probabilities (its logits) and the other parts' floored ones."""
        x = np.asarray(x, np.float32)
        weights = dict(zip(FINAL_PARTS, self.final_weights_))
        # the network always: a model may have no other part
        used = [name for name in FINAL_PARTS if name == "network" or weights[name] > 0]
        exact_linear = self.params.final_blend == "geometric" and self.expert_shares_ is not None
        out = np.empty((len(x), len(self.classes_)), np.float32)
        for start in range(0, len(x), PREDICT_CHUNK):
            chunk = x[start:start + PREDICT_CHUNK]
            if exact_linear and "linear pair" in used:
                logs = self.part_log_probabilities(chunk, used)
                out[start:start + PREDICT_CHUNK] = geometric_mean(list(logs.values()), [weights[name] for name in logs])
            else:
                parts = self.part_probabilities(chunk, used)
                out[start:start + PREDICT_CHUNK] = next(iter(parts.values())) if len(parts) == 1 else blend(
                    list(parts.values()), [weights[name] for name in parts], self.params.final_blend)
        return out

    def linear_logits(self, x: np.ndarray) -> np.ndarray:
        """The linear pair's logits for raw cells (its kernel folded onto the scaler)."""
        self._fold()
        return x @ self._linear_raw[0] + self._linear_raw[1]

    def part_probabilities(self, x: np.ndarray, names: tuple[str, ...] | list[str] = FINAL_PARTS) -> dict[str, np.ndarray]:
        """Each named part's probabilities for raw cells (keys from FINAL_PARTS; parts the model lacks are left out),
        so that benchmarks and ablations can weigh them without retraining."""
        x = np.asarray(x, np.float32)
        self._fold()
        parts = {}
        if "network" in names:
            parts["network"] = self._fused.predict_proba(x)
        if "linear pair" in names and self._linear_raw is not None:
            parts["linear pair"] = softmax(self.linear_logits(x))
        if "booster" in names and self.booster_expert is not None:
            parts["booster"] = self._xgb_probs(self.scaler.transform(x))
        return parts

    def part_log_probabilities(self, x: np.ndarray, names: tuple[str, ...] | list[str] = FINAL_PARTS) -> dict[str, np.ndarray]:
        """Each named part's log-probabilities as the geometric blend takes them: the linear pair's exact (from its
        logits), the others' floored at PROBABILITY_FLOOR."""
        x = np.asarray(x, np.float32)
        floored = self.part_probabilities(x, [name for name in names if name != "linear pair"])
        logs = {name: np.log(p + np.float32(PROBABILITY_FLOOR)) for name, p in floored.items()}
        if "linear pair" in names and self._linear_raw is not None:
            logs["linear pair"] = log_softmax(self.linear_logits(x))
        return logs

    def _fold(self) -> None:
        """Build the fused network and the linear pair on raw cells (the scaler folded in), once."""
        if self._fused is None:
            offset, scale = np.asarray(self.scaler.offset), np.asarray(self.scaler.scale)
            self._fused = FusedNet(self.members, offset, scale, len(self.params.encoder_sizes), self.params.skip_input)
            self._linear_raw = None if self.linear_expert is None else fold_scaler(*self.linear_expert, offset, scale)

    def weights_text(self) -> str:
        """The final weights of the parts, and the experts' shares behind the linear pair's and the booster's, in words."""
        text = " · ".join(f"{name} {w:.2f}" for name, w in zip(FINAL_PARTS, self.final_weights_))
        if self.expert_shares_ is None:
            return text
        shares = ", ".join(f"{name} {v:.2f}" for name, v in zip(EXPERT_NAMES, self.expert_shares_))
        return f"{text} (experts' shares chosen on your labels: {shares})"

    def params_dict(self) -> dict:
        """The parameters, with the final weights the model was trained with and the experts' shares."""
        shares = {} if self.expert_shares_ is None else {"expert_shares": dict(zip(EXPERT_NAMES, self.expert_shares_))}
        return {**self.params.to_dict(), "final_weights": self.final_weights_, **shares}

    def save_state(self, directory: str) -> dict:
        """Write every member's dense kernels and biases (and the linear pair) to weights.npz, the booster to
        teacher_xgb.json (XGBoost's own format, no pickle; file and key names as older bundles have them); return the
        JSON architecture."""
        arrays = {"classes": self.classes_}
        if self.linear_expert is not None:
            arrays["teacher_kernel"], arrays["teacher_bias"] = self.linear_expert
        for i, layers in enumerate(self.members):
            for j, (w, b) in enumerate(layers):
                arrays[f"m{i}_l{j}_kernel"], arrays[f"m{i}_l{j}_bias"] = w, b
        np.savez(os.path.join(directory, "weights.npz"), **arrays)
        if self.booster_expert is not None:
            self.booster_expert.save_model(os.path.join(directory, "teacher_xgb.json"))
        return {
            "params": self.params_dict(),
            "scaler": self.scaler.to_dict(),
            "architecture": {"members": len(self.members), "layers": len(self.members[0]),
                             "activation": "relu", "skip_after_encoder": self.params.skip_input,
                             "linear_teacher": self.linear_expert is not None,
                             "xgb_teacher": self.booster_expert is not None},
        }

    @classmethod
    def load_state(cls, directory: str, config: dict) -> "VIMEClassifier":
        """Rebuild from weights.npz (bounded read, pickle never used) and the JSON architecture; no code is executed."""
        model = cls(VIMEParams.from_dict(config["params"]))
        model.scaler = Scaler.from_dict(config["scaler"])
        shares = config["params"].get("expert_shares")
        model.expert_shares_ = None if shares is None else tuple(float(shares[name]) for name in EXPERT_NAMES)
        arch = config["architecture"]
        if arch.get("xgb_teacher"):
            import xgboost as xgb

            model.booster_expert = xgb.Booster(params={"nthread": model.params.threads})
            model.booster_expert.load_model(os.path.join(directory, "teacher_xgb.json"))
        z = read_npz(os.path.join(directory, "weights.npz"))
        model.classes_ = z["classes"]
        if arch.get("linear_teacher"):
            model.linear_expert = (z["teacher_kernel"], z["teacher_bias"])
        model.members = [[(z[f"m{i}_l{j}_kernel"], z[f"m{i}_l{j}_bias"]) for j in range(arch["layers"])]
                         for i in range(arch["members"])]
        return model

    # -- training stages --

    def _pretrain(self, s_all: np.ndarray, target: np.ndarray, clock: "_Clock") -> list[np.ndarray]:
        """Self-supervised stage: mask estimation (BCE) + alpha × reconstruction (MSE) on corrupted cells."""
        import keras
        import tensorflow as tf

        p = self.params
        d = s_all.shape[1]
        encoder = _dense_stack(p.encoder_sizes, "encoder")
        mask_head, recon_head = keras.layers.Dense(d, name="mask"), keras.layers.Dense(d, activation="sigmoid", name="recon")
        inp = keras.Input((d,))
        h = encoder(inp)
        model = keras.Model(inp, [mask_head(h), recon_head(h)])
        opt = keras.optimizers.Adam(p.learning_rate)
        gen = tf.random.Generator.from_seed(p.seed)

        @tf.function
        def step(xb, tb):
            x_tilde, m = corrupt(xb, p.p_m, gen)
            with tf.GradientTape() as tape:
                m_logits, x_hat = model(x_tilde, training=True)
                lm, lr = mask_loss(m, m_logits), reconstruction_loss(tb, x_hat)
                loss = lm + p.alpha * lr
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return lm, lr

        rng = np.random.default_rng(p.seed + 1)
        for i in range(p.pretrain_steps):
            idx = rng.integers(0, len(s_all), p.pretrain_batch)
            lm, lr = step(s_all[idx], target[idx])
            clock.tick(lambda: f"VIME self-supervised: step {i + 1}, mask loss {float(lm):.4f}, reconstruction {float(lr):.4f}")
        return encoder.get_weights()

    def _xgb_probs(self, s: np.ndarray) -> np.ndarray:
        """The booster's probabilities for scaled cells."""
        return booster_probs(self.booster_expert, s, len(self.classes_))

    def _build(self, d: int, n_classes: int, encoder_weights: list[np.ndarray], seed: int):
        """One predictor (pretrained encoder + MLP head), its dense layers in order, and its compiled train step."""
        import keras
        import tensorflow as tf

        p = self.params
        keras.utils.set_random_seed(seed)
        encoder = _dense_stack(p.encoder_sizes, "encoder")
        inp = keras.Input((d,))
        h = encoder(inp)
        encoder.set_weights(encoder_weights)
        if p.skip_input:
            h = keras.layers.Concatenate()([h, inp])
        head = [keras.layers.Dense(s, activation="relu") for s in p.predictor_sizes] + [keras.layers.Dense(n_classes)]
        for layer in head:
            h = layer(h)
        model = keras.Model(inp, h)
        opt = keras.optimizers.Adam(p.learning_rate)
        gen = tf.random.Generator.from_seed(seed)

        @tf.function
        def step(xb, yb, wb, ub):
            batch = tf.shape(ub)[0]
            copies, _ = corrupt(tf.tile(ub, [p.k, 1]), p.p_m, gen)
            with tf.GradientTape() as tape:
                ce = weighted_cross_entropy(yb, model(xb, training=True), wb)
                pu = tf.nn.softmax(model(tf.concat([ub, copies], 0), training=True))
                cons = consistency_loss(tf.reshape(pu[batch:], [p.k, batch, n_classes]))
                ent = entropy_loss(pu[:batch])
                loss = ce + p.beta * cons + p.entropy_weight * ent
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return ce, cons, ent

        return model, list(encoder.layers) + head, step

    def _train_round(self, step, s_l, yl, px, py, s_u, rng, clock: "_Clock", label: str) -> None:
        """One self-training round: batches of labelled + pseudo-labelled cells (class-balanced) and unlabelled cells."""
        p = self.params
        half = p.batch_labeled // 2 if len(py) else p.batch_labeled
        labeled, pseudo = _Sampler(yl, p.balanced), _Sampler(py, p.balanced)
        for i in range(p.semi_steps):
            li = labeled.draw(half, rng)
            xb, yb, wb = s_l[li], yl[li], np.ones(len(li), np.float32)
            if len(py):
                pi = pseudo.draw(p.batch_labeled - half, rng)
                xb, yb = np.concatenate([xb, px[pi]]), np.concatenate([yb, py[pi]])
                wb = np.concatenate([wb, np.full(len(pi), p.pseudo_weight, np.float32)])
            ub = s_u[rng.integers(0, len(s_u), p.batch_unlabeled)]
            ce, cons, ent = step(xb, yb, wb, ub)
            clock.tick(lambda: f"VIME {label}: step {i + 1}, cross-entropy {float(ce):.4f}, "
                               f"consistency {float(cons):.4f}, entropy {float(ent):.4f}")

    def _member_mean(self, s: np.ndarray) -> np.ndarray:
        """Ensemble-mean probabilities of already-scaled cells."""
        n_enc = len(self.params.encoder_sizes)
        return sum(softmax(forward_logits(m, s, n_enc, self.params.skip_input)) for m in self.members) / len(self.members)


class _Clock:
    """Counts training steps, reporting progress and honouring cancellation every `progress_every` steps; the experts
    count as EXPERT_STEPS steps, reported by their own stages."""

    def __init__(self, p: VIMEParams, progress: Progress | None, should_stop: ShouldStop | None) -> None:
        self.total = p.pretrain_steps + EXPERT_STEPS + p.rounds * p.semi_steps * p.ensemble
        self.every, self.done = max(1, p.progress_every), 0
        self.progress, self.should_stop = progress, should_stop

    def stage(self, steps: int) -> Progress:
        """A progress callback for a stage worth `steps` steps: its fraction in [0, 1] moves the clock along them."""
        start = self.done

        def moved(fraction: float, message: str) -> None:
            self.done = start + round(steps * min(max(fraction, 0.0), 1.0))
            check_stop(self.should_stop)
            report(self.progress, 0.99 * self.done / self.total, f"VIME {message}")

        return moved

    def tick(self, message) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            check_stop(self.should_stop)
            report(self.progress, 0.99 * self.done / self.total, message())


class _Sampler:
    """Draws row indices: uniformly over rows, or (balanced) a class uniformly then a row within it."""

    def __init__(self, y: np.ndarray, balanced: bool) -> None:
        self.order = np.argsort(y, kind="stable")
        _, self.starts, self.counts = np.unique(y[self.order], return_index=True, return_counts=True)
        self.balanced, self.n = balanced, len(y)

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if not self.balanced:
            return rng.integers(0, self.n, size)
        c = rng.integers(0, len(self.starts), size)
        return self.order[self.starts[c] + (rng.random(size) * self.counts[c]).astype(np.int64)]


def _dense_stack(sizes: list[int], name: str):
    """A Sequential of ReLU dense layers."""
    import keras

    return keras.Sequential([keras.layers.Dense(s, activation="relu") for s in sizes], name=name)


def _configure_tensorflow(threads: int) -> None:
    """Bound TensorFlow's thread pools and request deterministic ops (only possible before TF starts working)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier fit in this process; the first setting stands
    tf.config.experimental.enable_op_determinism()
