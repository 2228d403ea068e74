export function onPublish(ctx) {
  return ctx.events.map((e) => ({ ...e, payload: { via: 'cdk', was: e.payload } }));
}
