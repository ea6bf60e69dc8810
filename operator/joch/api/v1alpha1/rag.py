"""RAG (memory.joch.dev/v1alpha1): a retrieval pipeline over KnowledgeSources, with chunking and citations.

docs/catalog.md section 2.15; docs/decisions.md D2 (references in the same namespace by default), D12 (the
vector store secret is only referenced).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta


class RAGSourceRef(meta.Schema):
    """A typed reference to a KnowledgeSource."""

    name: meta.Name = Field(description="metadata.name of the KnowledgeSource.")
    kind: Literal["KnowledgeSource"] | None = Field(
        default=None, description="Kind of the source; only KnowledgeSource is supported (the default)."
    )


class RAGVectorStore(meta.Schema):
    """Where chunks and their embeddings are stored."""

    type: Literal["pgvector", "qdrant", "pinecone", "weaviate", "redis", "elasticsearch", "opensearch"] = (
        Field(
            description="Vector database: pgvector, qdrant, pinecone, weaviate, redis, elasticsearch or "
            "opensearch."
        )
    )
    connection_secret_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret (ops.joch.dev) holding the connection string; the control plane never "
        "reads it.",
    )
    collection: str | None = Field(
        default=None, max_length=253, description="Collection, index or table that holds the chunks."
    )


class RAGChunking(meta.Schema):
    """How documents are split into chunks."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "!has(self.overlapTokens) || !has(self.maxTokens) || self.overlapTokens < self.maxTokens",
                "overlapTokens must be smaller than maxTokens",
                ".overlapTokens",
            ),
        )
    }

    strategy: Literal["semantic", "fixed", "recursive", "markdown"] | None = Field(
        default=None,
        description="semantic (split at topic changes), fixed (every maxTokens), recursive (by paragraphs, "
        "then sentences) or markdown (by headings).",
    )
    max_tokens: int | None = Field(default=None, ge=1, le=100000, description="Largest chunk, in tokens.")
    overlap_tokens: int | None = Field(
        default=None,
        ge=0,
        le=100000,
        description="Tokens shared by neighbouring chunks; less than maxTokens.",
    )


class RAGReranker(meta.Schema):
    """Optional second-stage ranking of retrieved chunks."""

    enabled: bool | None = Field(default=None, description="Rerank the retrieved chunks.")
    model_ref: meta.Ref | None = Field(default=None, description="The Model that reranks.")


class RAGRetrieval(meta.Schema):
    """How chunks are retrieved for a query."""

    top_k: int | None = Field(default=None, ge=1, le=1000, description="Chunks returned per query.")
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="Chunks scoring below this (0..1) are dropped."
    )
    hybrid_search: bool | None = Field(default=None, description="Combine keyword and vector search.")
    reranker: RAGReranker | None = Field(default=None, description="Second-stage reranking.")


class RAGCitations(meta.Schema):
    """What answers built from retrieved chunks must cite."""

    required: bool | None = Field(default=None, description="Answers must cite the chunks they use.")
    include_source_uri: bool | None = Field(default=None, description="Citations include the source URI.")
    include_line_numbers: bool | None = Field(default=None, description="Citations include line numbers.")


class RAGFreshness(meta.Schema):
    """How often the index is refreshed and when it counts as stale."""

    sync_interval: meta.Duration | None = Field(default=None, description="How often to reindex, e.g. 1h.")
    stale_after: meta.Duration | None = Field(
        default=None, description="The index is Stale when the last indexing is older than this, e.g. 24h."
    )


class RAGPermissions(meta.Schema):
    """Document-level access control."""

    inherit_from_source: bool | None = Field(
        default=None, description="Chunks carry the permissions of their source documents."
    )
    enforce_at_query_time: bool | None = Field(
        default=None, description="Drop chunks the calling agent's principal may not read, at query time."
    )


class RAGObservability(meta.Schema):
    """What retrievals record."""

    log_retrievals: bool | None = Field(default=None, description="Record each retrieval in traces.")


class RAGSpec(meta.Schema):
    """Desired state of a RAG pipeline."""

    description: str | None = Field(default=None, max_length=4096, description="What the pipeline is for.")
    sources: list[RAGSourceRef] = Field(
        min_length=1,
        max_length=128,
        json_schema_extra=meta.list_map("name"),
        description="KnowledgeSources indexed, in the RAG's namespace. Names are unique.",
    )
    embedding_model_ref: meta.Ref | None = Field(
        default=None, description="The Model that computes embeddings (it needs capabilities.embeddings)."
    )
    vector_store: RAGVectorStore | None = Field(default=None, description="Where chunks and embeddings live.")
    chunking: RAGChunking | None = Field(default=None, description="How documents are split.")
    retrieval: RAGRetrieval | None = Field(
        default=None, description="topK, score floor, hybrid search, reranker."
    )
    citations: RAGCitations | None = Field(default=None, description="Citation requirements.")
    freshness: RAGFreshness | None = Field(default=None, description="Reindex interval and staleness.")
    permissions: RAGPermissions | None = Field(default=None, description="Document-level access control.")
    policies: list[meta.Ref] | None = Field(
        default=None, max_length=256, description="Policies applied to retrievals from this pipeline."
    )
    observability: RAGObservability | None = Field(default=None, description="Retrieval logging.")


class RAGStatus(meta.Status):
    """Observed state of a RAG pipeline."""

    phase: Literal["Pending", "Indexing", "Ready", "Stale", "Failed"] | None = Field(
        default=None,
        description="Pending: not indexed yet. Indexing: an indexing run is in progress. Ready: indexed and "
        "fresh. Stale: the last indexing is older than freshness.staleAfter. Failed: indexing failed.",
    )
    documents_indexed: int | None = Field(default=None, ge=0, description="Documents in the index.")
    chunk_count: int | None = Field(default=None, ge=0, description="Chunks in the index.")
    last_indexed_at: str | None = Field(
        default=None, max_length=64, description="When indexing last completed (RFC 3339)."
    )
    retrieval_count7d: int | None = Field(default=None, ge=0, description="Retrievals in the last 7 days.")
    citation_rate7d: float | None = Field(
        default=None, ge=0, le=1, description="Share of answers with citations over the last 7 days (0..1)."
    )


class RAG(meta.Resource):
    """A retrieval pipeline: sources, embedding model, vector store, chunking, retrieval and citations."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="memory.joch.dev",
        kind="RAG",
        plural="rags",
        scope="Namespaced",
        short_names=("rag",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Embedding", ".spec.embeddingModelRef.name", description="Embedding Model."),
            meta.PrinterColumn(
                "Docs", ".status.documentsIndexed", "integer", description="Documents indexed."
            ),
            meta.PrinterColumn("Chunks", ".status.chunkCount", "integer", description="Chunks indexed."),
            meta.PrinterColumn(
                "Phase", ".status.phase", description="Pending, Indexing, Ready, Stale, Failed."
            ),
            meta.PrinterColumn("LastIndexed", ".status.lastIndexedAt", "date", priority=1),
        ),
        description="A retrieval-augmented generation pipeline over KnowledgeSources: embedding model, "
        "vector store, chunking, retrieval, citations, freshness and permissions.",
    )

    spec: RAGSpec = Field(description="Desired state of the RAG pipeline.")
    status: RAGStatus | None = Field(default=None, description="Observed state, written by the operator.")
