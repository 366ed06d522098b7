"""The agent scope: what a caller holds to act as one agent.

::

    v.add_agent("ci-bot", credentials=["github*"], tools=["http_request"],
                allow=["GET https://api.github.com/repos/*"], rate="60/min",
                approve=["http_request"])           # -> (AgentInfo, token shown once)
    scoped = v.as_agent("ci-bot", approver=ask)
    scoped.credentials(); scoped.tools(); scoped.call_tool("http_request", {...})

An :class:`AgentScope` is a handle on the call pipeline with the agent's name and approver: it
holds no facade, so code given a scope can do what the agent may do and nothing more. The rules
themselves are in :mod:`vultrino.policy`; the pipeline (:mod:`vultrino.pipeline`) applies them
to every call, whichever entry point it came through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vultrino.pipeline import Caller, Pipeline

if TYPE_CHECKING:
    from vultrino.info import CredentialInfo, ToolInfo
    from vultrino.plugins.base import Streaming
    from vultrino.policy.approval import Approver
    from vultrino.policy.profile import AgentInfo

__all__ = ["AgentScope"]


class AgentScope:
    """One agent's view of Vultrino (made by ``Vultrino.as_agent(name, approver=...)``).

    Every call reads the profile from the store once, so removing or changing a profile takes
    effect on the next call. ``approver`` asks a person about calls the profile marks
    ``approve``; without one they are refused.
    """

    __slots__ = ("_caller", "_pipeline")

    def __init__(
        self,
        pipeline: Pipeline,
        name: str,
        *,
        approver: Approver | None = None,
        key: str | None = None,
        client: str | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._caller = Caller(name, approver, key, client)
        self.profile()  # an unknown agent fails here, not on the first call

    @property
    def name(self) -> str:
        return self._caller.agent

    @property
    def approver(self) -> Approver | None:
        return self._caller.approver

    def profile(self) -> AgentInfo:
        """The agent's profile as stored now (without its token's digest)."""
        return self._pipeline.agent_profile(self._caller.agent).info()

    # -- what the agent sees -----------------------------------------------------------------

    def credentials(self) -> list[CredentialInfo]:
        """The profile's credentials (metadata only)."""
        return self._pipeline.credentials(self._caller)

    def credential_info(self, alias: str) -> CredentialInfo:
        return self._pipeline.credential_info(alias, self._caller)

    def tools(self) -> list[ToolInfo]:
        """The profile's tools; their ``credential`` descriptions name only its credentials."""
        return self._pipeline.tools(self._caller)

    # -- what the agent does -----------------------------------------------------------------

    def call_tool(self, name: str, arguments: Mapping[str, Any], *, source: str = "mcp") -> Any:
        return self._pipeline.call_tool(name, arguments, caller=self._caller, source=source)

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        plugin: str | None = None,
        source: str = "api",
        from_cli: bool = False,
        stream: Streaming | None = None,
    ) -> Any:
        """``from_cli``: the values are a command line's strings, converted to each
        parameter's declared type (the remote CLI's calls). ``stream``: the call streams its
        body both ways (the forward proxy; :meth:`Pipeline.call`)."""
        return self._pipeline.execute(
            alias,
            action,
            params,
            caller=self._caller,
            plugin=plugin,
            source=source,
            from_cli=from_cli,
            stream=stream,
        )

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        source: str = "api",
        from_cli: bool = False,
    ) -> Any:
        return self._pipeline.run_action(
            plugin, action, params, caller=self._caller, source=source, from_cli=from_cli
        )

    def refresh(self) -> bool:
        return self._pipeline.refresh()
