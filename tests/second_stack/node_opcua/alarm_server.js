// node-opcua with alarms and conditions, for the connector's alarm tests (an open endpoint).
//
// Objects/tank (ns=1) is an event source under the Server object: `level` (Double, writable)
// feeds an ExclusiveLimitAlarm `LevelAlarm` (high 90, high-high 98, low 10, low-low 2) and
// `door_open` (Boolean, writable) an OffNormalAlarm `DoorOpen` (normal: false). A client raises
// and clears them by writing the variables. ConditionRefresh and Acknowledge are node-opcua's.
//
// Environment: PORT. Prints "READY <port>" once listening; stops on SIGTERM.
"use strict";
const opcua = require("node-opcua");
const { openServer, serve, runMain } = require("./serving.js");

const WRITABLE = "CurrentRead | CurrentWrite";

async function main() {
    const port = Number(process.env.PORT);
    const server = await openServer(port, "shopfloor-test-node-opcua-alarms");
    const addressSpace = server.engine.addressSpace;
    addressSpace.installAlarmsAndConditionsService();
    const ns = addressSpace.getOwnNamespace();
    const tank = ns.addObject({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: "tank",
        nodeId: "s=tank",
        eventSourceOf: addressSpace.rootFolder.objects.server,
    });
    const level = ns.addVariable({
        componentOf: tank,
        browseName: "level",
        nodeId: "s=tank.level",
        dataType: "Double",
        accessLevel: WRITABLE,
        userAccessLevel: WRITABLE,
        value: new opcua.Variant({ dataType: opcua.DataType.Double, value: 50 }),
    });
    const door = ns.addVariable({
        componentOf: tank,
        browseName: "door_open",
        nodeId: "s=tank.door_open",
        dataType: "Boolean",
        accessLevel: WRITABLE,
        userAccessLevel: WRITABLE,
        value: new opcua.Variant({ dataType: opcua.DataType.Boolean, value: false }),
    });
    const normal = ns.addVariable({
        componentOf: tank,
        browseName: "door_normal",
        dataType: "Boolean",
        value: new opcua.Variant({ dataType: opcua.DataType.Boolean, value: false }),
    });
    const levelAlarm = ns.instantiateExclusiveLimitAlarm("ExclusiveLimitAlarmType", {
        browseName: "LevelAlarm",
        conditionName: "LevelAlarm",
        componentOf: tank,
        conditionSource: tank,
        inputNode: level,
        highHighLimit: 98,
        highLimit: 90,
        lowLimit: 10,
        lowLowLimit: 2,
    });
    levelAlarm.setEnabledState(true);
    const doorAlarm = ns.instantiateOffNormalAlarm({
        browseName: "DoorOpen",
        conditionName: "DoorOpen",
        componentOf: tank,
        conditionSource: tank,
        inputNode: door,
        normalState: normal,
    });
    doorAlarm.setEnabledState(true);
    await serve(server, port);
}

runMain(main);
