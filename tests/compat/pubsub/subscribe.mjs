// Drives the unmodified salesforce-pubsub-api-client against the simulator: subscribes to one
// topic and prints every parsed event as one JSON line on stdout, then exits.
//
// Configuration comes as JSON in PUBSUB_ARGS: endpoint, accessToken, instanceUrl,
// organizationId, topic, count, and optionally replayId (subscribe after it) or earliest.
// Exit codes: 0 once `count` events arrived, 3 on a stream error (printed as {"error": ...}),
// 4 on timeout.
import PubSubApiClient from 'salesforce-pubsub-api-client';

const args = JSON.parse(process.env.PUBSUB_ARGS);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const out = (obj) =>
    process.stdout.write(
        JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n'
    );

const timer = setTimeout(() => {
    out({ timeout: true });
    process.exit(4);
}, args.timeoutMs ?? 20000);

const client = new PubSubApiClient(
    {
        authType: 'user-supplied',
        accessToken: args.accessToken,
        instanceUrl: args.instanceUrl,
        organizationId: args.organizationId,
        pubSubEndpoint: args.endpoint,
        // The simulator's certificate is signed by its own CA, not a public one.
        rejectUnauthorizedSsl: false
    },
    quiet
);
await client.connect();

let received = 0;
const callback = (_info, type, data) => {
    if (type === 'event') {
        out({ event: data });
        received += 1;
        if (received === args.count) {
            clearTimeout(timer);
            client.close();
            process.exit(0);
        }
    } else if (type === 'error') {
        out({ error: { code: data?.code, details: data?.details, message: String(data?.message ?? data) } });
        clearTimeout(timer);
        process.exit(3);
    }
};

if (args.replayId !== undefined && args.replayId !== null) {
    client.subscribeFromReplayId(args.topic, callback, args.count, Number(args.replayId));
} else if (args.earliest) {
    client.subscribeFromEarliestEvent(args.topic, callback, args.count);
} else {
    client.subscribe(args.topic, callback, args.count);
}
