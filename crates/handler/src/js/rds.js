// `@aws-appsync/utils/rds`: builders of AppSync's SQL request objects
// (`{statements, variableMap, variableTypeHintMap}`). Herald's Rust side runs them against
// PostgreSQL or MySQL/MariaDB (`source/rds.rs`). Every value becomes a named parameter (`:P0`,
// `:P1`, …); identifiers are quoted for the dialect, so neither can change a statement's shape.

const HINT = Symbol('typeHint');
const SQL = Symbol('sql');
const BUILT = Symbol('builder');

function hinted(type) {
  return (value) => ({ [HINT]: type, value });
}

// `typeHint.UUID(id)`: the value is sent with that SQL type (the Data API's `typeHint`).
export const typeHint = {
  DECIMAL: hinted('DECIMAL'),
  JSON: hinted('JSON'),
  TIMESTAMP: hinted('TIMESTAMP'),
  DATE: hinted('DATE'),
  TIME: hinted('TIME'),
  UUID: hinted('UUID'),
};

// A statement being rendered: the parameters it has taken so far, shared by the statements of
// one request.
class Params {
  constructor(dialect) {
    this.dialect = dialect;
    this.map = {};
    this.hints = {};
    this.count = 0;
  }
  add(v) {
    const name = ':P' + this.count++;
    if (v !== null && typeof v === 'object' && v[HINT]) {
      this.hints[name] = v[HINT];
      v = v.value;
    }
    if (v === undefined) v = null;
    if (v instanceof Date) v = v.toISOString();
    this.map[name] = v;
    return name;
  }
  ident(name) {
    const q = this.dialect === 'pg' ? '"' : '`';
    return String(name)
      .split('.')
      .map((part) => q + part.split(q).join(q + q) + q)
      .join('.');
  }
  table(t) {
    if (t !== null && typeof t === 'object') {
      const [[schema, table]] = Object.entries(t);
      return this.ident(schema) + '.' + this.ident(table);
    }
    if (typeof t !== 'string' || t === '') throw new Error('a table name is required');
    return this.ident(t);
  }
}

// `sql\`SELECT * FROM t WHERE id = ${id}\``: the text stays as written, every `${…}` becomes a
// parameter.
export function sql(strings, ...values) {
  return { [SQL]: true, strings: [...strings], values };
}

function like(v, before, after) {
  const escaped = String(v).replace(/[\\%_]/g, (c) => '\\' + c);
  return before + escaped + after;
}

const COMPARE = { eq: '=', ne: '<>', lt: '<', le: '<=', gt: '>', ge: '>=' };

function condition(p, where) {
  const parts = [];
  for (const [key, spec] of Object.entries(where ?? {})) {
    if (key === 'and' || key === 'or') {
      const inner = (spec ?? []).map((w) => condition(p, w)).filter(Boolean);
      if (inner.length > 0) parts.push('(' + inner.join(key === 'and' ? ' AND ' : ' OR ') + ')');
      continue;
    }
    if (key === 'not') {
      const inner = condition(p, spec);
      if (inner) parts.push('NOT (' + inner + ')');
      continue;
    }
    const col = p.ident(key);
    for (const [op, v] of Object.entries(spec ?? {})) {
      if (COMPARE[op]) {
        if (v === null && (op === 'eq' || op === 'ne')) {
          parts.push(col + (op === 'eq' ? ' IS NULL' : ' IS NOT NULL'));
        } else {
          parts.push(`${col} ${COMPARE[op]} ${p.add(v)}`);
        }
        continue;
      }
      switch (op) {
        case 'between': parts.push(`${col} BETWEEN ${p.add(v[0])} AND ${p.add(v[1])}`); break;
        case 'beginsWith': parts.push(`${col} LIKE ${p.add(like(v, '', '%'))}`); break;
        case 'contains': parts.push(`${col} LIKE ${p.add(like(v, '%', '%'))}`); break;
        case 'notContains': parts.push(`${col} NOT LIKE ${p.add(like(v, '%', '%'))}`); break;
        case 'attributeExists': parts.push(col + (v ? ' IS NOT NULL' : ' IS NULL')); break;
        case 'in':
        case 'notIn': {
          if (!Array.isArray(v) || v.length === 0) throw new Error(op + ' on ' + key + ' needs a non-empty array');
          parts.push(`${col} ${op === 'in' ? 'IN' : 'NOT IN'} (${v.map((x) => p.add(x)).join(', ')})`);
          break;
        }
        default: throw new Error('unsupported operator ' + op + ' on ' + key);
      }
    }
  }
  return parts.join(' AND ');
}

function returning(p, r) {
  if (!r) return '';
  if (r === true || r === '*') return ' RETURNING *';
  const cols = Array.isArray(r) ? r : [r];
  return ' RETURNING ' + cols.map((c) => p.ident(c)).join(', ');
}

function built(render) {
  return { [BUILT]: render };
}

// `select({table, columns, where, orderBy, limit, offset})`.
export function select({ table, from, columns, where, orderBy, limit, offset } = {}) {
  return built((p) => {
    const cols = !columns || columns === '*' || columns.length === 0
      ? '*'
      : (Array.isArray(columns) ? columns : [columns]).map((c) => (c === '*' ? '*' : p.ident(c))).join(', ');
    let text = `SELECT ${cols} FROM ${p.table(table ?? from)}`;
    const w = condition(p, where);
    if (w) text += ' WHERE ' + w;
    if (orderBy && orderBy.length > 0) {
      text += ' ORDER BY ' + orderBy
        .map(({ column, dir }) => p.ident(column) + (String(dir ?? 'ASC').toUpperCase() === 'DESC' ? ' DESC' : ' ASC'))
        .join(', ');
    }
    if (limit !== undefined && limit !== null) text += ' LIMIT ' + p.add(Number(limit));
    if (offset !== undefined && offset !== null) text += ' OFFSET ' + p.add(Number(offset));
    return text;
  });
}

// `insert({table, values, returning})`.
export function insert({ table, values, returning: r } = {}) {
  return built((p) => {
    const entries = Object.entries(values ?? {});
    if (entries.length === 0) throw new Error('insert needs values');
    const cols = entries.map(([c]) => p.ident(c)).join(', ');
    const vals = entries.map(([, v]) => p.add(v)).join(', ');
    return `INSERT INTO ${p.table(table)} (${cols}) VALUES (${vals})${returning(p, r)}`;
  });
}

// `update({table, values, where, returning})`.
export function update({ table, values, where, returning: r } = {}) {
  return built((p) => {
    const entries = Object.entries(values ?? {});
    if (entries.length === 0) throw new Error('update needs values');
    const set = entries.map(([c, v]) => `${p.ident(c)} = ${p.add(v)}`).join(', ');
    let text = `UPDATE ${p.table(table)} SET ${set}`;
    const w = condition(p, where);
    if (w) text += ' WHERE ' + w;
    return text + returning(p, r);
  });
}

// `remove({table, where, returning})`: DELETE.
export function remove({ table, where, returning: r } = {}) {
  return built((p) => {
    let text = `DELETE FROM ${p.table(table)}`;
    const w = condition(p, where);
    if (w) text += ' WHERE ' + w;
    return text + returning(p, r);
  });
}

function render(p, statement) {
  if (typeof statement === 'string') return statement;
  if (statement && statement[SQL]) {
    let text = statement.strings[0];
    statement.values.forEach((v, i) => {
      text += p.add(v) + statement.strings[i + 1];
    });
    return text;
  }
  if (statement && statement[BUILT]) return statement[BUILT](p);
  throw new Error('a statement is a sql`…` template, a string, or select/insert/update/remove');
}

function create(dialect, statements) {
  if (statements.length === 0 || statements.length > 2) {
    throw new Error('a SQL request takes one or two statements');
  }
  const p = new Params(dialect);
  const out = { statements: statements.map((s) => render(p, s)), variableMap: p.map };
  if (Object.keys(p.hints).length > 0) out.variableTypeHintMap = p.hints;
  return out;
}

// The request object for PostgreSQL (identifiers in double quotes).
export function createPgStatement(...statements) {
  return create('pg', statements);
}

// The request object for MySQL and MariaDB (identifiers in backticks).
export function createMySQLStatement(...statements) {
  return create('mysql', statements);
}

function cell(field) {
  if (!field || field.isNull) return null;
  for (const key of ['stringValue', 'longValue', 'doubleValue', 'booleanValue', 'blobValue']) {
    if (key in field) return field[key];
  }
  if ('arrayValue' in field) return field.arrayValue;
  return null;
}

// `ctx.result` (the Data API's ExecuteStatement answer, as text or object) as one array of row
// objects per statement.
export function toJsonObject(result) {
  const parsed = typeof result === 'string' ? JSON.parse(result) : result;
  return (parsed?.sqlStatementResults ?? []).map(({ records, columnMetadata }) =>
    (records ?? []).map((record) => {
      const row = {};
      record.forEach((field, i) => {
        const column = columnMetadata?.[i];
        row[column?.label ?? column?.name ?? String(i)] = cell(field);
      });
      return row;
    }));
}

// `toJsonString(result)`: the same, as JSON text.
export function toJsonString(result) {
  return JSON.stringify(toJsonObject(result));
}
