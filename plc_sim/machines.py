"""Process models of the machines of a line, one class per machine kind.

Each model advances its true process state by `dt` seconds with first-order physics (exact
exponential discretisation, so any step size is stable) and writes the true values of every
signal of its catalogue to `out`. Measurement (sensor noise, sensor faults, range clamping) is
applied afterwards by the simulator. Parameters come from the line file and are validated here.
"""

from __future__ import annotations

import math
from enum import Enum, IntEnum
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from plc_sim.faults import FaultBook


class SignalKind(Enum):
    """What a signal is; decides its data type on the wire and what may be done with it."""

    ANALOG = "analog"  # a measurement: may carry sensor noise
    TOTAL = "total"  # a continuous counter that only increases (kWh, hours)
    COUNT = "count"  # an integer counter that only increases (bottles)
    STATE = "state"  # MachineState
    FLAG = "flag"  # a boolean status or alarm
    COMMAND = "command"  # a boolean command a client may write (run/stop)


class MachineState(IntEnum):
    """The `state` signal of every machine, as the simulated PLCs encode it. plc_sim depends on
    nothing of ours (it stands in for equipment that does not share our code), so this is the
    device's side of the contract in core.schema.MachineState; a test keeps them equal."""

    STOPPED = 0
    IDLE = 1
    RUNNING = 2
    FAULTED = 3


class StopReason(IntEnum):
    """The `reason_code` signal: why a machine stands (idle or faulted), 0 while it does not.
    The device's side of core.reasons.ReasonCode (a test keeps them equal)."""

    NONE = 0
    JAM = 1
    BREAKDOWN = 2
    STARVED = 3
    BLOCKED = 4
    FLOW_DIVERSION = 5
    NO_DEMAND = 6
    CLEANING = 10
    CHANGEOVER = 11
    MAINTENANCE = 12


# the reasons a scheduled (planned) stop may give
PLANNED_STOPS = (StopReason.CLEANING, StopReason.CHANGEOVER, StopReason.MAINTENANCE)

A, T, C, S, F, CMD = (
    SignalKind.ANALOG,
    SignalKind.TOTAL,
    SignalKind.COUNT,
    SignalKind.STATE,
    SignalKind.FLAG,
    SignalKind.COMMAND,
)


def approach(value: float, target: float, dt: float, tau: float) -> float:
    """First-order lag of `value` towards `target` with time constant `tau`, exact for any dt."""
    return target + (value - target) * math.exp(-dt / tau)


class Params(BaseModel):
    """Dynamics parameters of one machine; every field has a sensible default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Params under a name that the class attribute Machine.Params (a kind's own model) does not shadow
AnyParams = Params


class Machine:
    """Base of the models: identity, run command, state and the signal values it produces."""

    kind: ClassVar[str]
    Params: ClassVar[type[Params]]
    SIGNALS: ClassVar[dict[str, SignalKind]]
    # params field -> machine kinds its machine names may refer to (checked by the spec)
    REFERENCES: ClassVar[dict[str, tuple[str, ...]]] = {}
    # the reason its PLC gives when it stands by itself: idle (IDLE) and faulted (FAULTED)
    IDLE_REASON: ClassVar[StopReason] = StopReason.STARVED
    FAULT_REASON: ClassVar[StopReason] = StopReason.BREAKDOWN

    def __init__(self, name: str, params: AnyParams, faults: FaultBook, rng: np.random.Generator):
        self.name = name
        self.p = params
        self.rng = rng
        self._faults = faults
        self.run_cmd = True
        self.held = StopReason.NONE  # a planned stop under way: the operator holds the machine
        self.state = MachineState.STOPPED
        self.electric_kw = 0.0
        self.air_m3_min = 0.0  # compressed air this machine draws now
        self.out: dict[str, float] = dict.fromkeys(self.SIGNALS, 0.0)
        # the measured values (noise and sensor faults included) as the machine's own
        # controllers see them; the simulator fills it after each measurement
        self.measured: dict[str, float] = {}

    def link(self, machines: dict[str, Machine]) -> None:
        """Resolve references to other machines of the line (after all are built)."""

    def fault(self, name: str, now: float) -> float:
        return self._faults.level(self.name, name, now)

    def step(self, dt: float, now: float) -> None:
        raise NotImplementedError

    def advance(self, dt: float, now: float) -> None:
        """`step`, and the reason code for the state it leaves. A held machine runs its
        process as if stopped, but stands idle (powered, planned) rather than switched off."""
        commanded = self.run_cmd
        if self.held and commanded:
            self.run_cmd = False
            self.step(dt, now)
            self.run_cmd = commanded
            self.state = MachineState.IDLE
            self._publish()
        else:
            self.step(dt, now)
        self.out["reason_code"] = float(self._reason())

    def _reason(self) -> StopReason:
        if self.state == MachineState.IDLE:
            return self.held or self.IDLE_REASON
        if self.state == MachineState.FAULTED:
            return self.FAULT_REASON
        return StopReason.NONE

    def _publish(self, **values: float) -> None:
        self.out.update(values)
        self.out["state"] = float(self.state)
        if "run_cmd" in self.out:
            self.out["run_cmd"] = float(self.run_cmd)


class Drift:
    """A slow, bounded random wander (Ornstein-Uhlenbeck) for loads and grid quantities."""

    def __init__(self, sigma: float, tau_s: float) -> None:
        self.sigma, self.tau_s, self.x = sigma, tau_s, 0.0

    def step(self, dt: float, z: float) -> float:
        a = math.exp(-dt / self.tau_s)
        self.x = a * self.x + self.sigma * math.sqrt(1.0 - a * a) * z
        return self.x


# --- pasteurizer ---------------------------------------------------------------------------


class PasteurizerParams(Params):
    setpoint_c: float = 73.0
    inlet_temp_c: float = 4.0
    ambient_c: float = 20.0
    flow_lph: float = Field(6000.0, gt=0)
    hot_water_max_c: float = 110.0  # heating medium temperature at 100 % valve
    tau_medium_s: float = Field(40.0, gt=0)
    tau_product_s: float = Field(20.0, gt=0)
    effectiveness: float = Field(0.9, gt=0, le=1)  # clean exchanger's share of the approach
    fouled_loss: float = Field(0.5, ge=0, lt=1)  # effectiveness lost at full hx_fouling
    kp: float = 2.0  # % valve per degC
    ki: float = 0.05  # % valve per degC per s
    holding_lag_s: float = Field(15.0, gt=0)
    holding_loss_c: float = 0.3
    divert_below_c: float = 71.7  # legal minimum: below it product is diverted back
    pump_kw: float = 4.0


class Pasteurizer(Machine):
    """HTST pasteurizer: a PI loop holds product temperature by modulating the hot-water valve."""

    kind = "pasteurizer"
    Params = PasteurizerParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "run_cmd": CMD,
        "product_temp_c": A,
        "holding_temp_c": A,
        "hot_water_temp_c": A,
        "inlet_temp_c": A,
        "setpoint_c": A,
        "steam_valve_pct": A,
        "flow_lph": A,
        "divert_valve": F,
    }
    p: PasteurizerParams
    IDLE_REASON = StopReason.FLOW_DIVERSION  # product below the legal temperature

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.medium_c = self.product_c = self.holding_c = self.p.ambient_c
        self.integral = 0.0
        self.valve = 0.0
        self.divert = True

    def step(self, dt: float, now: float) -> None:
        p = self.p
        fouling = self.fault("hx_fouling", now)
        if self.run_cmd:
            self._control(dt)
            heated = p.ambient_c + self.valve / 100.0 * (p.hot_water_max_c - p.ambient_c)
            effectiveness = p.effectiveness * (1.0 - p.fouled_loss * fouling)
            product_target = p.inlet_temp_c + effectiveness * (self.medium_c - p.inlet_temp_c)
            flow = p.flow_lph
        else:
            self.integral = self.valve = 0.0
            heated = product_target = p.ambient_c
            flow = 0.0
        self.medium_c = approach(self.medium_c, heated, dt, p.tau_medium_s)
        self.product_c = approach(self.product_c, product_target, dt, p.tau_product_s)
        self.holding_c = approach(
            self.holding_c, self.product_c - p.holding_loss_c, dt, p.holding_lag_s
        )
        # divert valve with 0.2 degC hysteresis, as a real flow-diversion controller has
        if self.holding_c < p.divert_below_c:
            self.divert = True
        elif self.holding_c >= p.divert_below_c + 0.2:
            self.divert = False
        if not self.run_cmd:
            self.state = MachineState.STOPPED
        else:
            self.state = MachineState.IDLE if self.divert else MachineState.RUNNING
        self.electric_kw = p.pump_kw if self.run_cmd else 0.0
        self._publish(
            product_temp_c=self.product_c,
            holding_temp_c=self.holding_c,
            hot_water_temp_c=self.medium_c,
            inlet_temp_c=p.inlet_temp_c,
            setpoint_c=p.setpoint_c,
            steam_valve_pct=self.valve,
            flow_lph=flow,
            divert_valve=float(self.divert),
        )

    def _control(self, dt: float) -> None:
        """PI with conditional integration (anti-windup) on the MEASURED product temperature:
        like a real loop it acts on sensor noise too, so the valve moves all the time."""
        error = self.p.setpoint_c - self.measured.get("product_temp_c", self.product_c)
        proportional = self.p.kp * error
        integral = self.integral + self.p.ki * error * dt
        output = proportional + integral
        if 0.0 <= output <= 100.0:
            self.integral = integral
        self.valve = min(100.0, max(0.0, proportional + self.integral))


# --- conveyor (motor with VFD) --------------------------------------------------------------


class ConveyorParams(Params):
    speed_setpoint_hz: float = Field(50.0, ge=0)
    nominal_hz: float = Field(50.0, gt=0)
    accel_hz_s: float = Field(10.0, gt=0)
    rated_current_a: float = Field(11.5, gt=0)
    no_load_current_a: float = Field(4.0, ge=0)
    current_limit_a: float = Field(17.0, gt=0)
    belt_load_kg: float = Field(120.0, ge=0)
    rated_load_kg: float = Field(200.0, gt=0)
    load_variation: float = Field(0.08, ge=0)  # sigma of the slow load wander, share of load
    rated_kw: float = Field(5.5, gt=0)
    ambient_c: float = 25.0
    temp_rise_c: float = Field(55.0, gt=0)  # winding rise over ambient at rated current
    tau_thermal_s: float = Field(600.0, gt=0)
    overheat_gain: float = Field(1.5, ge=0)  # extra rise share at full motor_overheat
    overtemp_alarm_c: float = 110.0
    vibration_mm_s: float = Field(1.2, ge=0)  # healthy vibration at nominal speed
    wear_vibration_mm_s: float = Field(9.0, ge=0)  # added at full bearing_wear
    dc_bus_v: float = 565.0
    bottles_per_hz_min: float = Field(3.0, gt=0)  # bottles delivered per minute per Hz


class Conveyor(Machine):
    """Belt conveyor driven by an induction motor on a VFD; feeds bottles to the filler."""

    kind = "conveyor"
    Params = ConveyorParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "run_cmd": CMD,
        "speed_hz": A,
        "current_a": A,
        "torque_pct": A,
        "power_kw": A,
        "motor_temp_c": A,
        "vibration_mm_s": A,
        "dc_bus_v": A,
        "run_hours": T,
        "alarm_overtemp": F,
        "alarm_overload": F,
    }
    p: ConveyorParams
    FAULT_REASON = StopReason.JAM  # the only fault that stalls it

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.speed_hz = 0.0
        self.motor_c = self.p.ambient_c
        self.run_hours = 0.0
        self.load_wander = Drift(self.p.load_variation, 60.0)
        self.supply_bpm = 0.0

    def step(self, dt: float, now: float) -> None:
        p = self.p
        jam, wear = self.fault("conveyor_jam", now), self.fault("bearing_wear", now)
        target_hz = p.speed_setpoint_hz * (1.0 - jam) if self.run_cmd else 0.0
        max_change = p.accel_hz_s * dt
        self.speed_hz += max(-max_change, min(max_change, target_hz - self.speed_hz))
        s = self.speed_hz / p.nominal_hz
        wander = self.load_wander.step(dt, self.rng.standard_normal())
        load = p.belt_load_kg / p.rated_load_kg * (1.0 + wander) * (1.0 + 0.15 * wear)
        limit_share = p.current_limit_a / p.rated_current_a
        torque = (load + jam * (limit_share - load)) if self.run_cmd else 0.0
        torque_current = (p.rated_current_a - p.no_load_current_a) * torque * s
        magnetising = p.no_load_current_a * (0.2 + 0.8 * s) if self.run_cmd else 0.0
        current = min(p.current_limit_a, magnetising + torque_current)
        if self.run_cmd:  # a stalled drive sits at its current limit
            current += jam * (p.current_limit_a - current)
        power = p.rated_kw * torque * s / 0.9 + (0.15 if self.run_cmd else 0.0)
        heating = 1.0 + p.overheat_gain * self.fault("motor_overheat", now)
        rise = p.temp_rise_c * (current / p.rated_current_a) ** 2 * heating + 6.0 * wear
        self.motor_c = approach(self.motor_c, p.ambient_c + rise, dt, p.tau_thermal_s)
        vibration = (p.vibration_mm_s * (0.3 + 0.7 * s) + p.wear_vibration_mm_s * wear * s) * (
            self.speed_hz > 0.1
        )
        if self.speed_hz > 0.5:
            self.run_hours += dt / 3600.0
        self.supply_bpm = self.speed_hz * p.bottles_per_hz_min
        if not self.run_cmd:
            self.state = MachineState.STOPPED
        else:
            self.state = MachineState.FAULTED if jam > 0.0 else MachineState.RUNNING
        self.electric_kw = power
        self._publish(
            speed_hz=self.speed_hz,
            current_a=current,
            torque_pct=100.0 * torque,
            power_kw=power,
            motor_temp_c=self.motor_c,
            vibration_mm_s=vibration,
            dc_bus_v=p.dc_bus_v - 6.0 * current / p.rated_current_a,
            run_hours=self.run_hours,
            alarm_overtemp=float(self.motor_c > p.overtemp_alarm_c),
            alarm_overload=float(current >= 1.1 * p.rated_current_a),
        )


# --- filler ---------------------------------------------------------------------------------


class FillerParams(Params):
    infeed: str = "conveyor"  # the conveyor that brings bottles
    product_from: str = "pasteurizer"  # where the product comes from
    nominal_bpm: float = Field(120.0, gt=0)
    fill_target_ml: float = Field(500.0, gt=0)
    fill_sigma_ml: float = Field(1.5, ge=0)  # bottle-to-bottle process variation
    reject_tolerance_ml: float = Field(4.5, gt=0)
    rated_kw: float = Field(3.0, ge=0)
    air_m3_min: float = Field(0.6, ge=0)  # compressed air for the fill valves while running
    tau_rate_s: float = Field(5.0, gt=0)


class Filler(Machine):
    """Rotary filler: runs when bottles arrive and product is pasteurized, idles when starved."""

    kind = "filler"
    Params = FillerParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "run_cmd": CMD,
        "fill_rate_bpm": A,
        "fill_volume_ml": A,
        "bottles_filled_total": C,
        "bottles_rejected_total": C,
    }
    REFERENCES: ClassVar[dict[str, tuple[str, ...]]] = {
        "infeed": ("conveyor",),
        "product_from": ("pasteurizer",),
    }
    p: FillerParams

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rate_bpm = 0.0
        self.filled = self.rejected = 0.0
        self.volume_ml = self.p.fill_target_ml
        tolerance = self.p.reject_tolerance_ml / max(self.p.fill_sigma_ml, 1e-9)
        self.reject_share = math.erfc(tolerance / math.sqrt(2.0))

    def link(self, machines: dict[str, Machine]) -> None:
        infeed, product = machines[self.p.infeed], machines[self.p.product_from]
        assert isinstance(infeed, Conveyor) and isinstance(product, Pasteurizer)
        self.infeed, self.product = infeed, product

    def step(self, dt: float, now: float) -> None:
        p = self.p
        supply = self.infeed.supply_bpm
        starved = supply < 0.2 * p.nominal_bpm or self.product.state != MachineState.RUNNING
        if not self.run_cmd:
            self.state, target = MachineState.STOPPED, 0.0
        elif starved:
            self.state, target = MachineState.IDLE, 0.0
        else:
            self.state, target = MachineState.RUNNING, min(p.nominal_bpm, supply)
        self.rate_bpm = approach(self.rate_bpm, target, dt, p.tau_rate_s)
        bottles = self.rate_bpm / 60.0 * dt
        self.filled += bottles
        self.rejected += bottles * self.reject_share
        z = self.rng.standard_normal()
        if self.rate_bpm > 1.0:
            self.volume_ml = p.fill_target_ml + p.fill_sigma_ml * z
        share = self.rate_bpm / p.nominal_bpm
        self.electric_kw = p.rated_kw * (0.3 + 0.7 * share) if self.run_cmd else 0.0
        self.air_m3_min = p.air_m3_min if self.state == MachineState.RUNNING else 0.0
        self._publish(
            fill_rate_bpm=self.rate_bpm,
            fill_volume_ml=self.volume_ml,
            bottles_filled_total=math.floor(self.filled),
            bottles_rejected_total=math.floor(self.rejected),
        )


# --- capper ---------------------------------------------------------------------------------


class CapperParams(Params):
    upstream: str = "filler"  # the filler whose bottles it caps
    nominal_bpm: float = Field(120.0, gt=0)
    torque_target_nm: float = Field(2.2, gt=0)
    torque_sigma_nm: float = Field(0.05, ge=0)
    miss_share: float = Field(0.001, ge=0, lt=1)  # bottles that pass without a cap
    rated_kw: float = Field(1.5, ge=0)
    air_m3_min: float = Field(0.3, ge=0)
    tau_rate_s: float = Field(3.0, gt=0)


class Capper(Machine):
    """Capper: follows the filler's output, applies caps at a controlled torque."""

    kind = "capper"
    Params = CapperParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "run_cmd": CMD,
        "speed_bpm": A,
        "cap_torque_nm": A,
        "caps_applied_total": C,
    }
    REFERENCES: ClassVar[dict[str, tuple[str, ...]]] = {"upstream": ("filler",)}
    p: CapperParams

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rate_bpm = self.caps = 0.0
        self.torque_nm = self.p.torque_target_nm

    def link(self, machines: dict[str, Machine]) -> None:
        upstream = machines[self.p.upstream]
        assert isinstance(upstream, Filler)
        self.upstream = upstream

    def step(self, dt: float, now: float) -> None:
        p = self.p
        incoming = self.upstream.rate_bpm if self.run_cmd else 0.0
        self.rate_bpm = approach(self.rate_bpm, incoming, dt, p.tau_rate_s)
        self.caps += self.rate_bpm / 60.0 * dt * (1.0 - p.miss_share)
        z = self.rng.standard_normal()
        if self.rate_bpm > 1.0:
            self.torque_nm = p.torque_target_nm + p.torque_sigma_nm * z
        if not self.run_cmd:
            self.state = MachineState.STOPPED
        else:
            busy = self.upstream.state == MachineState.RUNNING
            self.state = MachineState.RUNNING if busy else MachineState.IDLE
        self.electric_kw = p.rated_kw * (0.3 + 0.7 * self.rate_bpm / p.nominal_bpm) * self.run_cmd
        self.air_m3_min = p.air_m3_min if self.state == MachineState.RUNNING else 0.0
        self._publish(
            speed_bpm=self.rate_bpm,
            cap_torque_nm=self.torque_nm,
            caps_applied_total=math.floor(self.caps),
        )


# --- air compressor -------------------------------------------------------------------------


class AirCompressorParams(Params):
    consumers: list[str] = ["filler", "capper"]  # machines whose air_m3_min it supplies
    load_bar: float = Field(6.5, gt=0)  # loads (starts compressing) at or below this
    unload_bar: float = Field(7.5, gt=0)  # unloads at or above this
    low_alarm_bar: float = 6.0
    capacity_m3_min: float = Field(3.0, gt=0)  # free air delivered while loaded
    base_demand_m3_min: float = Field(0.5, ge=0)  # the rest of the plant
    leak_m3_min: float = Field(2.5, ge=0)  # extra demand at full air_leak
    receiver_m3: float = Field(1.0, gt=0)
    rated_current_a: float = Field(40.0, gt=0)
    unloaded_share: float = Field(0.35, ge=0, le=1)  # current share while running unloaded
    rated_kw: float = Field(22.0, gt=0)
    ambient_c: float = 25.0
    discharge_loaded_c: float = 85.0
    discharge_unloaded_c: float = 70.0
    tau_discharge_s: float = Field(120.0, gt=0)
    temp_rise_c: float = Field(50.0, gt=0)
    tau_thermal_s: float = Field(400.0, gt=0)
    overheat_gain: float = Field(1.5, ge=0)
    overtemp_alarm_c: float = 105.0
    vibration_mm_s: float = Field(2.0, ge=0)
    wear_vibration_mm_s: float = Field(8.0, ge=0)
    load_window_s: float = Field(300.0, gt=0)  # averaging time of load_pct


class AirCompressor(Machine):
    """Screw compressor with load/unload control: pressure saw-tooths between two limits."""

    kind = "air_compressor"
    Params = AirCompressorParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "run_cmd": CMD,
        "pressure_bar": A,
        "current_a": A,
        "power_kw": A,
        "discharge_temp_c": A,
        "motor_temp_c": A,
        "vibration_mm_s": A,
        "load_pct": A,
        "run_hours": T,
        "loaded_hours": T,
        "alarm_low_pressure": F,
        "alarm_overtemp": F,
    }
    REFERENCES: ClassVar[dict[str, tuple[str, ...]]] = {
        "consumers": ("pasteurizer", "conveyor", "filler", "capper"),
    }
    p: AirCompressorParams
    IDLE_REASON = StopReason.NO_DEMAND  # unloaded: the receiver is full

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.p
        self.pressure = p.load_bar
        self.loaded = False
        self.current = 0.0
        self.discharge_c = self.motor_c = p.ambient_c
        self.load_share = 0.0
        self.run_hours = self.loaded_hours = 0.0

    def link(self, machines: dict[str, Machine]) -> None:
        self.consumers = [machines[name] for name in self.p.consumers]

    def step(self, dt: float, now: float) -> None:
        p = self.p
        wear = self.fault("bearing_wear", now)
        demand = p.base_demand_m3_min + sum(m.air_m3_min for m in self.consumers)
        demand += p.leak_m3_min * self.fault("air_leak", now)
        if not self.run_cmd:
            self.loaded = False
        elif self.pressure <= p.load_bar:
            self.loaded = True
        elif self.pressure >= p.unload_bar:
            self.loaded = False
        delivered = p.capacity_m3_min if self.loaded else 0.0
        # free air into a receiver raises its pressure by volume ratio (bar per m3 at 1 bar)
        self.pressure = max(0.0, self.pressure + (delivered - demand) / 60.0 * dt / p.receiver_m3)
        share = (1.0 if self.loaded else p.unloaded_share) * self.run_cmd
        drawn = p.rated_current_a * share * (1.0 + 0.05 * wear)
        self.current = approach(self.current, drawn, dt, 2.0)
        if not self.run_cmd:
            discharge = p.ambient_c
        else:
            discharge = p.discharge_loaded_c if self.loaded else p.discharge_unloaded_c
        self.discharge_c = approach(self.discharge_c, discharge, dt, p.tau_discharge_s)
        heating = 1.0 + p.overheat_gain * self.fault("motor_overheat", now)
        rise = p.temp_rise_c * (self.current / p.rated_current_a) ** 2 * heating + 6.0 * wear
        self.motor_c = approach(self.motor_c, p.ambient_c + rise, dt, p.tau_thermal_s)
        self.load_share = approach(self.load_share, float(self.loaded), dt, p.load_window_s)
        if self.run_cmd:
            self.run_hours += dt / 3600.0
            self.loaded_hours += dt / 3600.0 * self.loaded
        power = p.rated_kw * self.current / p.rated_current_a
        healthy = p.vibration_mm_s * (0.6 + 0.4 * self.loaded)
        vibration = (healthy + p.wear_vibration_mm_s * wear) * self.run_cmd
        if not self.run_cmd:
            self.state = MachineState.STOPPED
        else:
            self.state = MachineState.RUNNING if self.loaded else MachineState.IDLE
        self.electric_kw = power
        self._publish(
            pressure_bar=self.pressure,
            current_a=self.current,
            power_kw=power,
            discharge_temp_c=self.discharge_c,
            motor_temp_c=self.motor_c,
            vibration_mm_s=vibration,
            load_pct=100.0 * self.load_share,
            run_hours=self.run_hours,
            loaded_hours=self.loaded_hours,
            alarm_low_pressure=float(self.pressure < p.low_alarm_bar),
            alarm_overtemp=float(self.discharge_c > p.overtemp_alarm_c),
        )


# --- three-phase energy meter ---------------------------------------------------------------


class EnergyMeterParams(Params):
    loads: list[str] = ["pasteurizer", "conveyor", "filler", "capper", "air_compressor"]
    base_load_kw: float = Field(6.0, ge=0)  # lighting, HVAC and the rest of the feeder
    phase_voltage_v: float = Field(230.0, gt=0)
    frequency_hz: float = Field(50.0, gt=0)
    imbalance: float = Field(0.03, ge=0, lt=0.5)  # share by which L1 carries more than average
    power_factor_low: float = Field(0.78, gt=0, le=1)  # at light load (motors under-loaded)
    power_factor_high: float = Field(0.92, gt=0, le=1)  # at rated_kw
    rated_kw: float = Field(45.0, gt=0)
    sag_depth: float = Field(0.2, ge=0, lt=1)  # voltage lost at full voltage_sag
    undervoltage_alarm_v: float = 207.0  # -10 %
    grid_variation: float = Field(0.005, ge=0)  # slow grid voltage wander, share


class EnergyMeter(Machine):
    """Three-phase meter on the line's feeder: sums the loads into V, I, PF, kW and kWh."""

    kind = "energy_meter"
    Params = EnergyMeterParams
    SIGNALS: ClassVar[dict[str, SignalKind]] = {
        "state": S,
        "reason_code": S,
        "voltage_l1_v": A,
        "voltage_l2_v": A,
        "voltage_l3_v": A,
        "current_l1_a": A,
        "current_l2_a": A,
        "current_l3_a": A,
        "power_kw": A,
        "power_factor": A,
        "frequency_hz": A,
        "energy_kwh": T,
        "alarm_undervoltage": F,
    }
    REFERENCES: ClassVar[dict[str, tuple[str, ...]]] = {
        "loads": ("pasteurizer", "conveyor", "filler", "capper", "air_compressor"),
    }
    p: EnergyMeterParams

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.energy_kwh = 0.0
        self.grid = Drift(self.p.grid_variation, 120.0)
        self.frequency = Drift(0.02, 30.0)

    def link(self, machines: dict[str, Machine]) -> None:
        self.loads = [machines[name] for name in self.p.loads]

    def step(self, dt: float, now: float) -> None:
        p = self.p
        z_grid, z_freq = self.rng.standard_normal(2).tolist()
        kw = p.base_load_kw + sum(m.electric_kw for m in self.loads)
        sag = 1.0 - p.sag_depth * self.fault("voltage_sag", now)
        v = p.phase_voltage_v * (1.0 + self.grid.step(dt, z_grid)) * sag
        volts = (v * 0.996, v * 1.003, v * 1.001)
        pf_share = min(1.0, kw / p.rated_kw)
        pf = p.power_factor_low + (p.power_factor_high - p.power_factor_low) * pf_share
        amps = kw * 1000.0 / (3.0 * v * pf)
        currents = (amps * (1 + p.imbalance), amps * (1 - p.imbalance / 2), amps)
        self.energy_kwh += kw * dt / 3600.0
        self.state = MachineState.RUNNING
        self._publish(
            voltage_l1_v=volts[0],
            voltage_l2_v=volts[1],
            voltage_l3_v=volts[2],
            current_l1_a=currents[0],
            current_l2_a=currents[1],
            current_l3_a=currents[2],
            power_kw=kw,
            power_factor=pf,
            frequency_hz=p.frequency_hz + self.frequency.step(dt, z_freq),
            energy_kwh=self.energy_kwh,
            alarm_undervoltage=float(min(volts) < p.undervoltage_alarm_v),
        )


# Machine kinds in stepping order: a machine reads only machines stepped before it.
MACHINE_TYPES: dict[str, type[Machine]] = {
    cls.kind: cls for cls in (Pasteurizer, Conveyor, Filler, Capper, AirCompressor, EnergyMeter)
}
