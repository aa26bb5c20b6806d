"""Checks an XGBoost model JSON before libxgboost reads it: libxgboost trusts the file, and deeply nested JSON or
tree indices out of range crash (segfault) or hang the whole process instead of raising."""
from __future__ import annotations

import json
from pathlib import Path

MAX_DEPTH = 32  # XGBoost's own model JSON nests 7 levels deep
ROOT_PARENT = (-1, 2**31 - 1)  # how XGBoost versions mark the root's parent
NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions", "default_left",
               "split_type", "loss_changes", "sum_hessian")


class InvalidModelFile(ValueError):
    """The file is not an XGBoost model this project wrote; the message says what is wrong, in a few words."""


def check_xgboost_json(path: Path) -> None:
    """Raise InvalidModelFile unless `path` is JSON of bounded depth holding a tree booster whose every index is in range."""
    try:
        model = json.loads(Path(path).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelFile("it is not JSON") from exc
    except RecursionError as exc:
        raise InvalidModelFile("it is nested too deeply") from exc
    if _depth(model) > MAX_DEPTH:
        raise InvalidModelFile("it is nested too deeply")
    try:
        learner = model["learner"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        n_classes = max(1, int(learner["learner_model_param"]["num_class"]))
        booster = learner["gradient_booster"]
        if booster["name"] != "gbtree":
            raise InvalidModelFile(f"its booster is {booster['name']!r}, not gbtree")
        trees, tree_info = booster["model"]["trees"], booster["model"]["tree_info"]
        if not isinstance(trees, list) or not isinstance(tree_info, list) or len(trees) != len(tree_info):
            raise InvalidModelFile("its tree list does not match its tree info")
        if not all(isinstance(g, int) and 0 <= g < n_classes for g in tree_info):
            raise InvalidModelFile("a tree belongs to no class")
        for tree in trees:
            _check_tree(tree, n_features)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidModelFile):
            raise
        raise InvalidModelFile("it lacks part of a tree booster or holds a wrong type") from exc


def _check_tree(tree: dict, n_features: int) -> None:
    """Every node array has one entry per node; children come after their node (so no cycle); features exist; a leaf
    of a multi-output tree (left child -1, right child its row of leaf_weights) names a row that exists."""
    n = int(tree["tree_param"]["num_nodes"])
    leaf_size = max(1, int(tree["tree_param"]["size_leaf_vector"]))
    if n < 1 or any(not isinstance(tree[k], list) or len(tree[k]) != n for k in NODE_ARRAYS):
        raise InvalidModelFile("a tree's node arrays do not match its node count")
    leaf_weights = tree.get("leaf_weights", []) if leaf_size > 1 else []
    if (not isinstance(tree["base_weights"], list) or len(tree["base_weights"]) != n * leaf_size
            or not isinstance(leaf_weights, list) or len(leaf_weights) % leaf_size):
        raise InvalidModelFile("a tree's weights do not match its node count")
    if any(tree[k] for k in ("categories", "categories_nodes", "categories_segments", "categories_sizes")):
        raise InvalidModelFile("it holds categorical splits, which this project never writes")
    n_leaf_rows = len(leaf_weights) // leaf_size
    parents = [-1] * n
    for node, (left, right, feature) in enumerate(zip(tree["left_children"], tree["right_children"], tree["split_indices"])):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right, feature)):
            raise InvalidModelFile("a tree index is not a whole number")
        if left == -1:
            if not (right == -1 or 0 <= right < n_leaf_rows):
                raise InvalidModelFile("a tree leaf is out of range")
        elif not (node < left < n and node < right < n and 0 <= feature < n_features):
            raise InvalidModelFile("a tree index is out of range")
        else:
            parents[left] = parents[right] = node
    if tree["parents"][0] not in ROOT_PARENT or tree["parents"][1:] != parents[1:] or -1 in parents[1:]:
        raise InvalidModelFile("a tree's parent links do not match its children")
    if any(v != 0 for v in tree["split_type"]) or any(v not in (0, 1) for v in tree["default_left"]):
        raise InvalidModelFile("a tree holds a split this project never writes")


def _depth(obj: object) -> int:
    """Nesting depth of parsed JSON, without recursion (the object may be as deep as the parser allowed)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
