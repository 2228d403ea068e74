// A CDK app (tests/amplify/test/cdk.test.mjs) describing an AppSync Event API with the L2 constructs EventApi and
// ChannelNamespace, as an AppSync user writes it. `node app.mjs OUTDIR` synthesizes it offline
// (no AWS account, no `cdk` CLI) into OUTDIR/HeraldEvents.template.json and its assets, which
// `herald apply` deploys to a Herald.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { App, Stack, Duration, Expiration } from 'aws-cdk-lib';
import { AppSyncAuthorizationType, ChannelNamespace, Code, EventApi } from 'aws-cdk-lib/aws-appsync';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ?? path.join(here, 'cdk.out');

const app = new App({ outdir });
const stack = new Stack(app, 'HeraldEvents');
const apiKey = { authorizationType: AppSyncAuthorizationType.API_KEY, apiKeyConfig: { description: 'web clients', expires: Expiration.after(Duration.days(30)) } };
const api = new EventApi(stack, 'Api', {
  apiName: 'cdk-events',
  authorizationConfig: { authProviders: [apiKey] },
});
api.addChannelNamespace('default');
new ChannelNamespace(stack, 'Chat', {
  api,
  channelNamespaceName: 'chat',
  code: Code.fromAsset(path.join(here, 'handlers', 'chat.js')),
});
new ChannelNamespace(stack, 'Inline', {
  api,
  channelNamespaceName: 'inline',
  code: Code.fromInline('export function onPublish(ctx) { return ctx.events; }'),
});
app.synth();
