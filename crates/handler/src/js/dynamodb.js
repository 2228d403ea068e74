// `@aws-appsync/utils/dynamodb`: builders of AppSync's DynamoDB request objects from plain
// values. Herald's Rust side sends them to the DynamoDB JSON API (`source/dynamodb.rs`).
const { util } = globalThis.__heraldUtils;
const { toMapValues, toDynamoDB } = util.dynamodb;

// Collects `#n` names and `:v` values while an expression is built.
class Expr {
  constructor(prefix) {
    this.prefix = prefix;
    this.names = {};
    this.values = {};
    this.count = 0;
  }
  name(path) {
    return String(path).split('.').map((part) => {
      const key = '#' + this.prefix + '_' + part.replace(/[^A-Za-z0-9_]/g, '_');
      this.names[key] = part;
      return key;
    }).join('.');
  }
  value(v) {
    const key = ':' + this.prefix + '_' + this.count++;
    this.values[key] = toDynamoDB(v);
    return key;
  }
  done(expression) {
    if (!expression) return undefined;
    const out = { expression };
    if (Object.keys(this.names).length > 0) out.expressionNames = this.names;
    if (Object.keys(this.values).length > 0) out.expressionValues = this.values;
    return out;
  }
}

function comparisons(e, field, ops) {
  const n = e.name(field);
  const parts = [];
  for (const [op, v] of Object.entries(ops ?? {})) {
    switch (op) {
      case 'eq': parts.push(`${n} = ${e.value(v)}`); break;
      case 'ne': parts.push(`${n} <> ${e.value(v)}`); break;
      case 'lt': parts.push(`${n} < ${e.value(v)}`); break;
      case 'le': parts.push(`${n} <= ${e.value(v)}`); break;
      case 'gt': parts.push(`${n} > ${e.value(v)}`); break;
      case 'ge': parts.push(`${n} >= ${e.value(v)}`); break;
      case 'between': parts.push(`${n} BETWEEN ${e.value(v[0])} AND ${e.value(v[1])}`); break;
      case 'beginsWith': parts.push(`begins_with(${n}, ${e.value(v)})`); break;
      case 'contains': parts.push(`contains(${n}, ${e.value(v)})`); break;
      case 'notContains': parts.push(`NOT contains(${n}, ${e.value(v)})`); break;
      case 'in': parts.push(`${n} IN (${v.map((x) => e.value(x)).join(', ')})`); break;
      case 'attributeExists': parts.push(v ? `attribute_exists(${n})` : `attribute_not_exists(${n})`); break;
      case 'attributeType': parts.push(`attribute_type(${n}, ${e.value(v)})`); break;
      case 'size': {
        const [inner] = Object.entries(v);
        const sym = { eq: '=', ne: '<>', lt: '<', le: '<=', gt: '>', ge: '>=' }[inner[0]];
        if (!sym) throw new Error('unsupported size comparison ' + inner[0]);
        parts.push(`size(${n}) ${sym} ${e.value(inner[1])}`);
        break;
      }
      default: throw new Error('unsupported operator ' + op + ' on ' + field);
    }
  }
  return parts;
}

// A filter or condition object ({field: {op: v}, and: [...], or: [...], not: {...}}).
function logical(e, input) {
  const parts = [];
  for (const [k, v] of Object.entries(input ?? {})) {
    if (v === undefined) continue;
    if (k === 'and' || k === 'or') {
      const inner = v.map((x) => logical(e, x)).filter(Boolean).map((x) => `(${x})`);
      if (inner.length > 0) parts.push(inner.join(k === 'and' ? ' AND ' : ' OR '));
    } else if (k === 'not') {
      const inner = logical(e, v);
      if (inner) parts.push(`NOT (${inner})`);
    } else {
      parts.push(...comparisons(e, k, v));
    }
  }
  return parts.join(' AND ');
}

function condition(input, prefix) {
  if (!input) return undefined;
  const e = new Expr(prefix);
  return e.done(logical(e, input));
}

function projection(fields) {
  if (!fields || fields.length === 0) return undefined;
  const e = new Expr('p');
  return e.done(fields.map((f) => e.name(f)).join(', '));
}

const OP = Symbol('operation');
const op = (kind, value, extra) => ({ [OP]: kind, value, extra });
export const operations = Object.freeze({
  add: (value) => op('add', value),
  remove: () => op('remove'),
  replace: (value) => op('replace', value),
  increment: (by) => op('increment', by),
  decrement: (by) => op('decrement', by),
  append: (items) => op('append', items),
  prepend: (items) => op('prepend', items),
  updateListItem: (value, index) => op('updateListItem', value, index),
});

function updateExpression(update) {
  const e = new Expr('u');
  const set = [];
  const add = [];
  const remove = [];
  for (const [field, v] of Object.entries(update ?? {})) {
    if (v === undefined) continue;
    const n = e.name(field);
    const kind = v !== null && typeof v === 'object' ? v[OP] : undefined;
    switch (kind) {
      case undefined: case 'replace': set.push(`${n} = ${e.value(kind ? v.value : v)}`); break;
      case 'remove': remove.push(n); break;
      case 'add': add.push(`${n} ${e.value(v.value)}`); break;
      case 'increment': add.push(`${n} ${e.value(v.value ?? 1)}`); break;
      case 'decrement': add.push(`${n} ${e.value(-(v.value ?? 1))}`); break;
      case 'append': set.push(`${n} = list_append(if_not_exists(${n}, ${e.value([])}), ${e.value(v.value)})`); break;
      case 'prepend': set.push(`${n} = list_append(${e.value(v.value)}, if_not_exists(${n}, ${e.value([])}))`); break;
      case 'updateListItem': set.push(`${n}[${Number(v.extra)}] = ${e.value(v.value)}`); break;
    }
  }
  const clauses = [];
  if (set.length) clauses.push('SET ' + set.join(', '));
  if (add.length) clauses.push('ADD ' + add.join(', '));
  if (remove.length) clauses.push('REMOVE ' + remove.join(', '));
  return e.done(clauses.join(' '));
}

function keyCondition(query) {
  const e = new Expr('k');
  const parts = [];
  for (const [field, ops] of Object.entries(query ?? {})) parts.push(...comparisons(e, field, ops));
  return e.done(parts.join(' AND '));
}

const clean = (o) => {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
};

export function get({ key, consistentRead, projection: fields }) {
  return clean({ operation: 'GetItem', key: toMapValues(key), consistentRead, projection: projection(fields) });
}

export function put({ key, item, condition: cond, _version }) {
  return clean({
    operation: 'PutItem', key: toMapValues(key), attributeValues: toMapValues(item),
    condition: condition(cond, 'c'), _version,
  });
}

export function remove({ key, condition: cond, _version }) {
  return clean({ operation: 'DeleteItem', key: toMapValues(key), condition: condition(cond, 'c'), _version });
}

export function update({ key, update: changes, condition: cond, _version }) {
  return clean({
    operation: 'UpdateItem', key: toMapValues(key), update: updateExpression(changes),
    condition: condition(cond, 'c'), _version,
  });
}

function read(operation, input) {
  const { filter, index, nextToken, limit, scanIndexForward, consistentRead, select, projection: fields,
    segment, totalSegments } = input ?? {};
  return clean({
    operation, filter: condition(filter, 'f'), index, nextToken, limit, scanIndexForward, consistentRead,
    select, projection: projection(fields), segment, totalSegments,
  });
}

export function query(input) {
  return clean({ ...read('Query', input), query: keyCondition(input.query) });
}

export function scan(input) {
  return read('Scan', input);
}

export function batchGet({ tables }) {
  const out = {};
  for (const [table, spec] of Object.entries(tables ?? {})) {
    const s = Array.isArray(spec) ? { keys: spec } : spec;
    out[table] = clean({
      keys: (s.keys ?? []).map(toMapValues), consistentRead: s.consistentRead, projection: projection(s.projection),
    });
  }
  return { operation: 'BatchGetItem', tables: out };
}

export function batchPut({ tables }) {
  const out = {};
  for (const [table, items] of Object.entries(tables ?? {})) out[table] = items.map(toMapValues);
  return { operation: 'BatchPutItem', tables: out };
}

export function batchDelete({ tables }) {
  const out = {};
  for (const [table, keys] of Object.entries(tables ?? {})) out[table] = keys.map(toMapValues);
  return { operation: 'BatchDeleteItem', tables: out };
}

export function transactGet({ items }) {
  return {
    operation: 'TransactGetItems',
    transactItems: items.map(({ table, key, projection: fields }) =>
      clean({ table, key: toMapValues(key), projection: projection(fields) })),
  };
}

export function transactWrite({ items }) {
  return {
    operation: 'TransactWriteItems',
    transactItems: items.map((entry) => {
      if (entry.putItem) {
        const { table, key, item, condition: c } = entry.putItem;
        return clean({ table, operation: 'PutItem', key: toMapValues(key), attributeValues: toMapValues(item), condition: condition(c, 'c') });
      }
      if (entry.updateItem) {
        const { table, key, update: u, condition: c } = entry.updateItem;
        return clean({ table, operation: 'UpdateItem', key: toMapValues(key), update: updateExpression(u), condition: condition(c, 'c') });
      }
      if (entry.removeItem) {
        const { table, key, condition: c } = entry.removeItem;
        return clean({ table, operation: 'DeleteItem', key: toMapValues(key), condition: condition(c, 'c') });
      }
      if (entry.conditionCheck) {
        const { table, key, condition: c } = entry.conditionCheck;
        return clean({ table, operation: 'ConditionCheck', key: toMapValues(key), condition: condition(c, 'c') });
      }
      throw new Error('transactWrite items need putItem, updateItem, removeItem or conditionCheck');
    }),
  };
}
