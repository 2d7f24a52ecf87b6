"""A fake Pinecone vector index: the data-plane endpoints the ``pinecone`` SDK (v10) calls,
plus the control-plane ``GET /indexes/{name}`` it uses to resolve an index's host.

Point the real SDK at it with ``pinecone.Index(host=server.url, api_key="test-key")`` or
``Pinecone(api_key="test-key", host=server.url).index(name=...)`` (this server is both
planes; the described host is itself).

It behaves like a dense index with the dotproduct metric holding hybrid records:
- upsert: ``values`` must have the index's dimension and at least one non-zero value;
  ``sparseValues`` are optional; metadata values must be strings, numbers, booleans or
  lists of strings (no nulls), as on the real service.
- query: a dense ``vector`` is required (a sparse-only query is refused on a dense index,
  as the real service does); the score is the dot product of the dense parts plus the dot
  product of the sparse parts. Exact search, best first, ties by id.
- filter: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or``; a list-valued field
  matches ``$eq``/``$in`` when any element does, ``$ne``/``$nin`` when none does; a
  missing field fails every operator except ``$ne``, ``$nin`` and ``$exists: false``.
- delete by ``ids``, by ``filter``, or ``deleteAll``; list by id ``prefix`` with pages.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.provider_base import BadRequest, FakeServer, Reply, Request

MAX_SPARSE = 1000
MAX_TOP_K = 10_000


def _scalar_match(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$in":
        return bool(value in operand)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        number = float(value)
        limit = float(operand)
        return bool(
            {"$gt": number > limit, "$gte": number >= limit, "$lt": number < limit, "$lte": number <= limit}[
                op
            ]
        )
    raise BadRequest(f"unsupported filter operator {op}")


def _field_match(metadata: dict[str, Any], field: str, condition: Any) -> bool:
    if not isinstance(condition, dict):
        condition = {"$eq": condition}
    present = field in metadata
    value = metadata.get(field)
    for op, operand in condition.items():
        if op in ("$in", "$nin") and not isinstance(operand, list):
            raise BadRequest(f"{op} takes a list")
        if op in ("$in", "$nin") and not operand:
            raise BadRequest(f"{op} takes a non-empty list")
        if op == "$exists":
            ok = present == bool(operand)
        elif op in ("$ne", "$nin"):
            positive = "$eq" if op == "$ne" else "$in"
            if not present:
                ok = True
            elif isinstance(value, list):
                ok = not any(_scalar_match(v, positive, operand) for v in value)
            else:
                ok = not _scalar_match(value, positive, operand)
        elif not present:
            ok = False
        elif isinstance(value, list):
            ok = any(_scalar_match(v, op, operand) for v in value)
        else:
            ok = _scalar_match(value, op, operand)
        if not ok:
            return False
    return True


def matches_filter(metadata: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """Pinecone's metadata filter semantics (the subset documented above)."""
    if not flt:
        return True
    for key, condition in flt.items():
        if key == "$and":
            if not all(matches_filter(metadata, sub) for sub in condition):
                return False
        elif key == "$or":
            if not any(matches_filter(metadata, sub) for sub in condition):
                return False
        elif key.startswith("$"):
            raise BadRequest(f"unsupported top-level operator {key}")
        elif not _field_match(metadata, key, condition):
            return False
    return True


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object")
    for key, value in metadata.items():
        if value is None:
            raise BadRequest(f"metadata field {key!r} is null: null values are not supported")
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise BadRequest(f"metadata field {key!r}: lists must hold strings")
        elif not isinstance(value, str | int | float | bool):
            raise BadRequest(f"metadata field {key!r} has an unsupported type")
    return dict(metadata)


def _check_sparse(sparse: Any) -> dict[int, float]:
    if sparse is None:
        return {}
    indices, values = sparse.get("indices"), sparse.get("values")
    if not isinstance(indices, list) or not isinstance(values, list) or len(indices) != len(values):
        raise BadRequest("sparse values need indices and values of the same length")
    if len(indices) > MAX_SPARSE:
        raise BadRequest(f"sparse vectors hold at most {MAX_SPARSE} non-zero values")
    if len(set(indices)) != len(indices):
        raise BadRequest("sparse indices must be unique")
    if any(not isinstance(i, int) or not 0 <= i < 2**32 for i in indices):
        raise BadRequest("sparse indices must be uint32")
    return {int(i): float(v) for i, v in zip(indices, values, strict=True)}


class FakePinecone(FakeServer):
    """One dotproduct (or cosine) dense index of ``dimension``, with namespaces."""

    api_key_header = "api-key"
    api_key_prefix = ""

    def __init__(
        self,
        api_key: str | None = "test-key",
        *,
        dimension: int = 64,
        metric: str = "dotproduct",
        index_name: str = "supportbot",
        page_size: int = 100,
    ) -> None:
        super().__init__(api_key)
        self.dimension = dimension
        self.metric = metric
        self.index_name = index_name
        self.page_size = page_size
        self.namespaces: dict[str, dict[str, dict[str, Any]]] = {}
        self._data_lock = threading.Lock()
        self.route("POST", "/vectors/upsert", self._upsert)
        self.route("POST", "/query", self._query)
        self.route("POST", "/vectors/delete", self._delete)
        self.route("GET", "/vectors/list", self._list)
        self.route("POST", "/describe_index_stats", self._stats)
        self.route("GET", "/indexes/{name}", self._describe_index)

    def __enter__(self) -> FakePinecone:
        super().__enter__()
        return self

    def unauthorized(self, request: Request) -> Reply:
        return Reply(401, {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"}, "status": 401})

    def records(self, namespace: str = "") -> dict[str, dict[str, Any]]:
        return self.namespaces.get(namespace, {})

    # -- data plane -------------------------------------------------------------------------------
    def _dense(self, values: Any, what: str) -> list[float]:
        if not isinstance(values, list) or len(values) != self.dimension:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise BadRequest(
                f"{what} dimension {got} does not match the dimension of the index {self.dimension}"
            )
        if not any(float(v) != 0.0 for v in values):
            raise BadRequest(f"{what}: dense vectors must contain at least one non-zero value")
        return [float(v) for v in values]

    def _upsert(self, request: Request, _: dict[str, str]) -> Reply:
        body: dict[str, Any] = request.json or {}
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors or len(vectors) > 1000:
            raise BadRequest("vectors must hold 1..1000 records")
        prepared: list[dict[str, Any]] = []
        for v in vectors:
            ident = v.get("id")
            if not isinstance(ident, str) or not ident or not ident.isascii() or len(ident) > 512:
                raise BadRequest(f"invalid vector id {ident!r}")
            sparse = v.get("sparseValues")
            if sparse is not None and self.metric != "dotproduct":
                raise BadRequest("sparse values are supported only for indexes with the dotproduct metric")
            prepared.append(
                {
                    "id": ident,
                    "values": self._dense(v.get("values"), "Vector"),
                    "sparse": _check_sparse(sparse),
                    "metadata": _check_metadata(v.get("metadata")),
                }
            )
        with self._data_lock:
            space = self.namespaces.setdefault(body.get("namespace", ""), {})
            for record in prepared:
                space[record["id"]] = record
        return Reply(200, {"upsertedCount": len(prepared)})

    def _score(self, record: dict[str, Any], dense: list[float], sparse: dict[int, float]) -> float:
        values = record["values"]
        score: float = sum(a * b for a, b in zip(values, dense, strict=True))
        if self.metric == "cosine":
            norm = (sum(a * a for a in values) * sum(b * b for b in dense)) ** 0.5
            score = score / norm if norm else 0.0
        score += sum(w * record["sparse"].get(i, 0.0) for i, w in sparse.items())
        return score

    def _query(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json or {}
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest("topK must be 1..10000")
        if "vector" not in body:
            raise BadRequest(
                "a dense index needs a dense query vector (sparse-only queries need a sparse index)"
            )
        dense = self._dense(body["vector"], "Query vector")
        sparse = _check_sparse(body.get("sparseVector"))
        if sparse and self.metric != "dotproduct":
            raise BadRequest("sparse queries are supported only for indexes with the dotproduct metric")
        namespace = body.get("namespace", "")
        flt = body.get("filter")
        with self._data_lock:
            candidates = [r for r in self.records(namespace).values() if matches_filter(r["metadata"], flt)]
        scored = sorted(
            ((self._score(r, dense, sparse), r) for r in candidates), key=lambda x: (-x[0], x[1]["id"])
        )
        matches = []
        for score, record in scored[:top_k]:
            match: dict[str, Any] = {"id": record["id"], "score": score, "values": []}
            if body.get("includeValues"):
                match["values"] = record["values"]
            if body.get("includeMetadata"):
                match["metadata"] = record["metadata"]
            matches.append(match)
        return Reply(200, {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}})

    def _delete(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json or {}
        namespace = body.get("namespace", "")
        selectors = [k for k in ("ids", "filter", "deleteAll") if body.get(k)]
        if len(selectors) != 1:
            raise BadRequest("give exactly one of ids, filter, deleteAll")
        with self._data_lock:
            space = self.namespaces.get(namespace, {})
            if body.get("deleteAll"):
                space.clear()
            elif body.get("ids"):
                if len(body["ids"]) > 1000:
                    raise BadRequest("at most 1000 ids per delete")
                for ident in body["ids"]:
                    space.pop(ident, None)
            else:
                for ident in [i for i, r in space.items() if matches_filter(r["metadata"], body["filter"])]:
                    del space[ident]
        return Reply(200, {})

    def _list(self, request: Request, _: dict[str, str]) -> Reply:
        prefix = request.query.get("prefix", [""])[0]
        namespace = request.query.get("namespace", [""])[0]
        limit = int(request.query.get("limit", [str(self.page_size)])[0])
        start = int(request.query.get("paginationToken", ["0"])[0])
        with self._data_lock:
            ids = sorted(i for i in self.records(namespace) if i.startswith(prefix))
        page = ids[start : start + limit]
        body: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if start + limit < len(ids):
            body["pagination"] = {"next": str(start + limit)}
        return Reply(200, body)

    def _stats(self, request: Request, _: dict[str, str]) -> Reply:
        if (request.json or {}).get("filter"):
            raise BadRequest("describe_index_stats does not support filters on this index")
        with self._data_lock:
            namespaces = {
                ns or "__default__": {"vectorCount": len(r)} for ns, r in self.namespaces.items() if r
            }
        return Reply(
            200,
            {
                "namespaces": namespaces,
                "dimension": self.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": sum(n["vectorCount"] for n in namespaces.values()),
                "metric": self.metric,
                "vectorType": "dense",
            },
        )

    # -- control plane ----------------------------------------------------------------------------
    def _describe_index(self, request: Request, params: dict[str, str]) -> Reply:
        if params["name"] != self.index_name:
            return Reply(
                404, {"error": {"code": "NOT_FOUND", "message": f"Index {params['name']} not found"}}
            )
        return Reply(
            200,
            {
                "name": self.index_name,
                "host": self.url,
                "status": {"ready": True, "state": "Ready"},
                "deletion_protection": "disabled",
                "schema": {
                    "fields": {
                        "values": {"type": "dense_vector", "dimension": self.dimension, "metric": self.metric}
                    }
                },
                "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
            },
        )
