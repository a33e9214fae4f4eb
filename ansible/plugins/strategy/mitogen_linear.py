"""Ansible's linear strategy through Mitogen (requirements/infra.in): one Python per
host keeps the modules it has loaded, instead of a new interpreter per task.
ANSIBLE_STRATEGY=linear runs without it."""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
