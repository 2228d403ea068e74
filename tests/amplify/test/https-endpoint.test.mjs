// Amplify configured with an https://localhost endpoint (TLS for HTTP publish
// too, certificate from Herald's development CA).
import { HTTPS_ENDPOINT } from './helpers.mjs';
import { defineCompatSuite } from './suite.mjs';

defineCompatSuite({ label: 'https endpoint', endpoint: HTTPS_ENDPOINT });
