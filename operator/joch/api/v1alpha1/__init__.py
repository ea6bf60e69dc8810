"""The joch resource catalog, v1alpha1: one module per kind (docs/catalog.md section 2, docs/decisions.md)."""

from __future__ import annotations

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agbom import AgBOM
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.approval import Approval
from joch.api.v1alpha1.artifact import Artifact
from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.conversation import Conversation
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.handoff import Handoff
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.secret import Secret
from joch.api.v1alpha1.statecheckpoint import StateCheckpoint
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.api.v1alpha1.toolcall import ToolCall
from joch.api.v1alpha1.trace import Trace

__all__ = [
    "KINDS",
    "RAG",
    "AgBOM",
    "Agent",
    "Approval",
    "Artifact",
    "Budget",
    "Conversation",
    "Deployment",
    "Environment",
    "Eval",
    "Execution",
    "FrameworkAdapter",
    "Handoff",
    "KnowledgeSource",
    "MCPServer",
    "Memory",
    "Model",
    "ModelRoute",
    "Policy",
    "Secret",
    "StateCheckpoint",
    "Team",
    "Tool",
    "ToolCall",
    "Trace",
    "kind_for",
    "kind_named",
    "meta",
]

KINDS: tuple[type[meta.Resource], ...] = (
    # Desired state (catalog 1.3), in the order the docs advise applying them.
    FrameworkAdapter,
    Model,
    ModelRoute,
    Secret,
    Tool,
    MCPServer,
    Memory,
    KnowledgeSource,
    RAG,
    Policy,
    Environment,
    Team,
    Budget,
    Agent,
    Deployment,
    Eval,
    AgBOM,
    # Runtime records.
    Execution,
    ToolCall,
    Handoff,
    Approval,
    Conversation,
    StateCheckpoint,
    Trace,
    Artifact,
)
"""Every kind served as a CRD, in a stable order."""

_BY_TYPE = {(k.crd.api_version, k.crd.kind): k for k in KINDS}
_BY_NAME = {k.crd.kind: k for k in KINDS}


def kind_for(api_version: str, kind: str) -> type[meta.Resource] | None:
    """The model class for an apiVersion/kind pair, or None if joch does not serve it."""
    return _BY_TYPE.get((api_version, kind))


def kind_named(kind: str) -> type[meta.Resource] | None:
    """The model class for a Kind name (``Agent``), or None."""
    return _BY_NAME.get(kind)
