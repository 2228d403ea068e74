// Amplify configured with Herald's plain-HTTP endpoint. amplify-js still opens
// wss://127.0.0.1:PORT/event/realtime for the socket (spec §1.1), which Herald's
// --dev-tls serves on the same port.
import { HTTP_ENDPOINT } from './helpers.mjs';
import { defineCompatSuite } from './suite.mjs';

defineCompatSuite({ label: 'http endpoint', endpoint: HTTP_ENDPOINT });
