// An independent OPC UA server for the connector tests (node-opcua, not written by us).
//
// Like a locked-down PLC: one secured endpoint (Basic256Sha256, Sign and SignAndEncrypt),
// a username/password login, and a certificate manager that refuses unknown client
// certificates and files them under <pki>/rejected until moved to <pki>/trusted/certs.
// Its variables keep their source timestamp until their value changes, as the spec says.
//
// Environment: PORT, PKI (folder), OPCUA_USER, OPCUA_PASSWORD. Prints "READY <port>" once
// listening; stops on SIGTERM.
"use strict";
const opcua = require("node-opcua");
const { serve, runMain } = require("./serving.js");

async function main() {
    const port = Number(process.env.PORT);
    const certificateManager = new opcua.OPCUACertificateManager({
        automaticallyAcceptUnknownCertificate: false,
        rootFolder: process.env.PKI,
    });
    await certificateManager.initialize();
    const server = new opcua.OPCUAServer({
        port,
        hostname: "127.0.0.1",
        resourcePath: "/plc",
        serverCertificateManager: certificateManager,
        securityPolicies: [opcua.SecurityPolicy.Basic256Sha256],
        securityModes: [opcua.MessageSecurityMode.Sign, opcua.MessageSecurityMode.SignAndEncrypt],
        allowAnonymous: false,
        userManager: {
            isValidUser: (user, password) =>
                user === process.env.OPCUA_USER && password === process.env.OPCUA_PASSWORD,
        },
        buildInfo: { productName: "shopfloor-test-node-opcua" },
    });
    await server.initialize();
    const ns = server.engine.addressSpace.getOwnNamespace();
    const oven = ns.addObject({
        organizedBy: server.engine.addressSpace.rootFolder.objects,
        browseName: "oven",
    });
    let temperature = 180.25;
    const temp = ns.addAnalogDataItem({
        componentOf: oven,
        browseName: "temperature",
        nodeId: "s=oven.temperature",
        dataType: "Double",
        engineeringUnitsRange: { low: 0, high: 400 },
        engineeringUnits: opcua.standardUnits.degree_celsius,
        value: new opcua.Variant({ dataType: opcua.DataType.Double, value: temperature }),
    });
    const constants = [
        ["mode", opcua.DataType.Int32, 3],
        ["running", opcua.DataType.Boolean, true],
        ["bottles", opcua.DataType.UInt32, 4000000001],
        ["setpoint", opcua.DataType.Double, 12345.678],
    ];
    for (const [name, dataType, value] of constants) {
        ns.addVariable({
            componentOf: oven,
            browseName: name,
            nodeId: `s=oven.${name}`,
            dataType: opcua.DataType[dataType],
            value: new opcua.Variant({ dataType, value }),
        });
    }
    // A value that changes every 200 ms; the others never change (constant source timestamps).
    setInterval(() => {
        temperature = Math.round((temperature + 0.5) * 100) / 100;
        temp.setValueFromSource(new opcua.Variant({ dataType: opcua.DataType.Double, value: temperature }));
    }, 200);
    await serve(server, port);
}

runMain(main);
