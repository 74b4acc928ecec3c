"""The typed line spec declares one machine spec per machine kind, in MACHINE_TYPES' order, each
with the kind's own parameter model (all defaults when the line file gives no `params:`)."""

from __future__ import annotations

import typing

from plc_sim.machines import MACHINE_TYPES
from plc_sim.spec import AnyMachineSpec, MachineSpec


def _specs() -> tuple[type[MachineSpec], ...]:
    union, *_ = typing.get_args(AnyMachineSpec)
    return typing.get_args(union)


def test_one_spec_per_machine_kind_in_order():
    kinds = [typing.get_args(spec.model_fields["kind"].annotation) for spec in _specs()]
    assert kinds == [(kind,) for kind in MACHINE_TYPES]


def test_each_spec_takes_its_kinds_params():
    for spec, machine in zip(_specs(), MACHINE_TYPES.values(), strict=True):
        params = spec.model_fields["params"]
        assert spec.__name__ == machine.Params.__name__.removesuffix("Params") + "Spec"
        assert params.annotation is machine.Params
        assert params.default_factory is machine.Params
