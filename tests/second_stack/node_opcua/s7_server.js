// An OPC UA server laid out like a Siemens S7-1500's (node-opcua, not written by us): the PLC's
// variables in namespace http://www.siemens.com/simatic-s7-opcua at index 3, with string ids
// that quote the DB and member names ("DB_Line"."Motor1"."Speed"), one variable of each OPC UA
// built-in type a PLC program exposes (the ByteString changing every 100 ms), an array, and an
// enumeration with EnumStrings.
//
// Open and anonymous (security None). Environment: PORT; EXTRA_NS=1 registers one more namespace
// first (a server restarted after a change of its configuration): the Siemens namespace is then
// at index 4, and index 3 is another PLC's whose ids are the same.
// Prints "READY <port>"; stops on SIGTERM.
"use strict";
const opcua = require("node-opcua");
const { openServer, serve, runMain } = require("./serving.js");

const SIEMENS = "http://www.siemens.com/simatic-s7-opcua";
const D = opcua.DataType;
const STARTED = new Date(Date.UTC(2026, 11, 7, 21, 0, 0, 125));

// [member, dataType, value, valueRank/arrayDimensions]
const MEMBERS = [
    ["Speed", D.Float, 1450.5],
    ["Temperature", D.Double, 72.25],
    ["Count", D.Int32, -6],
    ["Small", D.SByte, -7],
    ["Bottles", D.UInt32, 4000000001],
    ["Total", D.Int64, [0xffffffff, 0xfffffffa]], // -6 as node-opcua's [high, low] words
    ["Running", D.Boolean, true],
    ["BatchId", D.String, 'B-17 "quoted"'],
    ["Operator", D.LocalizedText, new opcua.LocalizedText({ text: "Jürgen", locale: "de" })],
    ["Started", D.DateTime, STARTED],
    ["Lot", D.Guid, "0D3C2F4E-8A1B-4C5D-9E6F-7A8B9C0D1E2F"],
    ["Raw", D.ByteString, Buffer.from([0, 1, 2])],
];

function addPlc(addressSpace, uri, base) {
    const ns = addressSpace.registerNamespace(uri);
    const db = ns.addObject({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: "DB_Line",
        nodeId: 's="DB_Line"',
    });
    const motor = ns.addObject({ componentOf: db, browseName: "Motor1", nodeId: 's="DB_Line"."Motor1"' });
    const variables = {};
    for (const [member, dataType, value] of MEMBERS) {
        const shifted = [D.Float, D.Double, D.Int32].includes(dataType); // the other PLC's differ
        variables[member] = (ns.addVariable({
            componentOf: motor,
            browseName: member,
            nodeId: `s="DB_Line"."Motor1"."${member}"`,
            dataType,
            value: new opcua.Variant({
                dataType,
                arrayType: opcua.VariantArrayType.Scalar,
                value: shifted ? value + base : value,
            }),
        }));
    }
    // A ByteString (not stored) that changes every 100 ms: its refusal is said once, not per change.
    let counter = 0;
    setInterval(() => {
        counter = (counter + 1) % 256;
        variables.Raw.setValueFromSource(
            new opcua.Variant({ dataType: D.ByteString, value: Buffer.from([0, 1, counter]) }),
        );
    }, 100);
    ns.addVariable({
        componentOf: motor,
        browseName: "Profile",
        nodeId: 's="DB_Line"."Motor1"."Profile"',
        dataType: D.Float,
        valueRank: 1,
        arrayDimensions: [10],
        value: new opcua.Variant({
            dataType: D.Float,
            arrayType: opcua.VariantArrayType.Array,
            value: new Float32Array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]),
        }),
    });
    const modes = ns.addEnumerationType({
        browseName: "MotorMode",
        enumeration: ["Stopped", "Running", "Fault"],
    });
    ns.addVariable({
        componentOf: motor,
        browseName: "Mode",
        nodeId: 's="DB_Line"."Motor1"."Mode"',
        dataType: modes,
        value: new opcua.Variant({ dataType: D.Int32, value: 1 }),
    });
}

async function main() {
    const port = Number(process.env.PORT);
    const server = await openServer(port, "shopfloor-test-s7-like");
    const addressSpace = server.engine.addressSpace;
    addressSpace.registerNamespace("urn:shopfloor-test:di"); // index 2, as on a real S7-1500
    if (process.env.EXTRA_NS === "1") {
        addPlc(addressSpace, "urn:shopfloor-test:another-plc", 1000); // now at index 3
    }
    addPlc(addressSpace, SIEMENS, 0);
    await serve(server, port);
}

runMain(main);
