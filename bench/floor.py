"""REFERENCE, not product code: the *floor* of the benchmark.

A minimal ASGI app that answers exactly the benchmark's operations with one hand-written SQL
statement each over asyncpg, PostgreSQL building the JSON. It stands for the cost of the
database plus HTTP alone; no GraphQL server can beat it. It recognises requests by
`operationName` and checks tokens as the real server does (JWT; API key by hash).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import asyncpg
import jwt
import orjson

PRIORITIES = "ARRAY['NONE','LOW','NORMAL','HIGH','URGENT']"


def gid(type_name: str, column: str) -> str:
    """SQL for the global ID of a row, as graph/ids.py makes it (url-safe base64, no padding)."""
    return (
        f"rtrim(translate(encode(convert_to('{type_name}:' || {column}, 'UTF8'), 'base64'), "
        "'+/', '-_'), '=')"
    )


def db_id(global_id: str) -> int:
    padded = global_id + "=" * (-len(global_id) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().partition(":")[2])


def b64url(text_sql: str) -> str:
    """SQL for url-safe base64 without padding of a text, as db/pagination.py writes cursors
    (PostgreSQL breaks its base64 into lines of 76 characters: those breaks go too)."""
    return (
        f"rtrim(translate(encode(convert_to({text_sql}, 'UTF8'), 'base64'), "
        "'+/' || chr(10), '-_'), '=')"
    )


def timestamp(column: str) -> str:
    """SQL for a timestamptz as the API writes it (Python's isoformat() in UTC: microseconds
    only when there are any; PostgreSQL's own JSON would drop their trailing zeros)."""
    return (
        f"""replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), """
        "'.000000+', '+')"
    )


def float_text(column: str) -> str:
    """SQL for a float as orjson writes it in a cursor: whole numbers keep their `.0`
    (PostgreSQL writes `1024`). Board positions stay far from the magnitudes where the two
    write exponents differently (below 1e-4, and fractions from 1e15 on)."""
    return (
        f"CASE WHEN {column} = trunc({column}) AND abs({column}) < 1e16 "
        f"THEN {column}::bigint::text || '.0' ELSE {column}::text END"
    )


def keyset(cursor: str, fingerprint: str) -> list[Any] | None:
    """The sort-key values of an API cursor (db/pagination.py), None when it was made for
    another ordering (the API refuses it)."""
    padded = cursor + "=" * (-len(cursor) % 4)
    made_for, values = orjson.loads(base64.urlsafe_b64decode(padded))
    return values if made_for == fingerprint else None


MEMBER = "EXISTS (SELECT 1 FROM memberships m WHERE m.workspace_id = {ws} AND m.user_id = $2)"

BOARD = f"""
WITH p AS (SELECT id, key FROM projects p WHERE id = $1 AND {MEMBER.format(ws="p.workspace_id")}),
t AS (SELECT t.* FROM tasks t JOIN p ON t.project_id = p.id ORDER BY t.position, t.id LIMIT 50)
SELECT coalesce(json_agg(json_build_object(
  'id', {gid("Task", "t.id")}, 'key', p.key || '-' || t.number, 'title', t.title,
  'status', t.status, 'priority', ({PRIORITIES})[t.priority + 1], 'position', t.position,
  'assignee', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
               FROM users u WHERE u.id = t.assignee_id),
  'labels', coalesce((SELECT json_agg(json_build_object('id', {gid("Label", "l.id")},
               'name', l.name, 'color', l.color) ORDER BY lower(l.name), l.id)
             FROM task_labels tl JOIN labels l ON l.id = tl.label_id WHERE tl.task_id = t.id), '[]'),
  'commentCount', (SELECT count(*) FROM comments c WHERE c.task_id = t.id)
) ORDER BY t.position, t.id), '[]')::text FROM t, p
"""

DETAIL = f"""
SELECT json_build_object(
  'id', {gid("Task", "t.id")}, 'key', p.key || '-' || t.number, 'title', t.title,
  'description', t.description, 'status', t.status,
  'priority', ({PRIORITIES})[t.priority + 1], 'dueDate', t.due_date,
  'createdAt', {timestamp("t.created_at")},
  'project', json_build_object('key', p.key, 'name', p.name),
  'assignee', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
               FROM users u WHERE u.id = t.assignee_id),
  'creator', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
              FROM users u WHERE u.id = t.creator_id),
  'labels', coalesce((SELECT json_agg(json_build_object('id', {gid("Label", "l.id")},
               'name', l.name, 'color', l.color) ORDER BY lower(l.name), l.id)
             FROM task_labels tl JOIN labels l ON l.id = tl.label_id WHERE tl.task_id = t.id), '[]'),
  'comments', json_build_object('nodes', coalesce((SELECT json_agg(json_build_object(
               'id', {gid("Comment", "c.id")}, 'body', c.body, 'createdAt', {timestamp("c.created_at")},
               'author', json_build_object('id', {gid("User", "a.id")}, 'name', a.name))
               ORDER BY c.created_at, c.id)
             FROM (SELECT * FROM comments WHERE task_id = t.id ORDER BY created_at, id LIMIT 20) c
             JOIN users a ON a.id = c.author_id), '[]')),
  'activity', json_build_object('nodes', coalesce((SELECT json_agg(json_build_object(
               'kind', x.kind, 'createdAt', {timestamp("x.created_at")}, 'changes', x.changes)
               ORDER BY x.created_at DESC, x.id DESC)
             FROM (SELECT * FROM activities WHERE task_id = t.id
                   ORDER BY created_at DESC, id DESC LIMIT 10) x), '[]'))
)::text
FROM tasks t JOIN projects p ON p.id = t.project_id
WHERE t.id = $1 AND {MEMBER.format(ws="t.workspace_id")}
"""

EXPORT_ORDER = "CREATED_AT:d,ID:d"
EXPORT_CURSOR = b64url(
    f"""'["{EXPORT_ORDER}",["' || {timestamp("e.created_at")} || '",' || e.id || ']]'"""
)
# A page of 100 and whether there is more: the 101 newest tasks, walking the workspace index.
EXPORT = f"""
WITH k AS (SELECT workspace_id FROM api_keys WHERE prefix = $2 AND secret_hash = $3
           AND revoked_at IS NULL),
w AS (SELECT w.id FROM workspaces w JOIN k ON k.workspace_id = w.id WHERE w.slug = $1),
t AS (SELECT t.* FROM tasks t WHERE t.workspace_id = (SELECT id FROM w)
      ORDER BY t.created_at DESC, t.id DESC LIMIT 101),
page AS (SELECT * FROM t ORDER BY created_at DESC, id DESC LIMIT 100)
SELECT (SELECT json_build_object(
  'pageInfo', json_build_object('hasNextPage', (SELECT count(*) FROM t) > 100,
    'endCursor', (SELECT {EXPORT_CURSOR} FROM page e ORDER BY e.created_at, e.id LIMIT 1)),
  'nodes', coalesce(json_agg(json_build_object(
    'id', {gid("Task", "n.id")}, 'key', p.key || '-' || n.number, 'title', n.title,
    'status', n.status, 'priority', ({PRIORITIES})[n.priority + 1],
    'updatedAt', {timestamp("n.updated_at")})
    ORDER BY n.created_at DESC, n.id DESC), '[]'))
  FROM page n JOIN projects p ON p.id = n.project_id)::text FROM w
"""

ME = f"""
SELECT json_build_object(
  'me', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name, 'email', u.email)
         FROM users u WHERE u.id = $1),
  'workspaces', json_build_object('nodes', coalesce((SELECT json_agg(json_build_object(
     'id', {gid("Workspace", "w.id")}, 'slug', w.slug, 'name', w.name, 'viewerRole', m.role,
     'projects', json_build_object('nodes', coalesce((SELECT json_agg(json_build_object(
         'id', {gid("Project", "p.id")}, 'key', p.key, 'name', p.name) ORDER BY p.key)
       FROM projects p WHERE p.workspace_id = w.id AND p.archived_at IS NULL), '[]')))
     ORDER BY w.slug)
   FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1), '[]'))
)::text
"""

# Lists of the API ordered by several keys break ties by id in the direction of the last key.
FILTERED = f"""
WITH p AS (SELECT id, key FROM projects p WHERE id = $1 AND {MEMBER.format(ws="p.workspace_id")}),
t AS (SELECT t.* FROM tasks t
      WHERE t.project_id = (SELECT id FROM p) AND t.status = ANY($3::text[])
        AND t.assignee_id = ANY($4::bigint[])
        -- every one of the labels ($5 holds distinct ids)
        AND (SELECT count(*) FROM task_labels tl
             WHERE tl.task_id = t.id AND tl.label_id = ANY($5::bigint[])) = cardinality($5::bigint[])
      ORDER BY t.priority DESC, coalesce(t.due_date, 'infinity'), t.id LIMIT 50)
SELECT (SELECT coalesce(json_agg(json_build_object(
  'id', {gid("Task", "t.id")}, 'key', p.key || '-' || t.number, 'title', t.title,
  'status', t.status, 'priority', ({PRIORITIES})[t.priority + 1], 'dueDate', t.due_date,
  'assignee', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
               FROM users u WHERE u.id = t.assignee_id),
  'labels', coalesce((SELECT json_agg(json_build_object('id', {gid("Label", "l.id")},
               'name', l.name, 'color', l.color) ORDER BY lower(l.name), l.id)
             FROM task_labels tl JOIN labels l ON l.id = tl.label_id WHERE tl.task_id = t.id), '[]')
) ORDER BY t.priority DESC, coalesce(t.due_date, 'infinity'), t.id), '[]') FROM t)::text FROM p
"""

# $3 is the ILIKE pattern, LIKE's wildcards escaped (db/sql.py escape_like).
SEARCH = f"""
WITH w AS (SELECT w.id FROM workspaces w WHERE w.slug = $1 AND {MEMBER.format(ws="w.id")}),
t AS (SELECT t.id, t.project_id, t.number, t.title, t.status, t.created_at FROM tasks t
      WHERE t.workspace_id = (SELECT id FROM w) AND (t.title ILIKE $3 OR t.description ILIKE $3)
      ORDER BY t.created_at DESC, t.id DESC LIMIT 20)
SELECT (SELECT coalesce(json_agg(json_build_object(
  'id', {gid("Task", "t.id")}, 'key', p.key || '-' || t.number, 'title', t.title,
  'status', t.status) ORDER BY t.created_at DESC, t.id DESC), '[]')
  FROM t JOIN projects p ON p.id = t.project_id)::text FROM w
"""

BOARD_ORDER = "POSITION:a,ID:a"
BACKWARD_CURSOR = b64url(
    f"""'["{BOARD_ORDER}",[' || {float_text("f.position")} || ',' || f.id || ']]'"""
)
# The page before the cursor: the 21 tasks before it walking the board index backwards, of
# which the 20 nearest are the page and the 21st says whether there are more.
BACKWARD = f"""
WITH p AS (SELECT id, key FROM projects p WHERE id = $1 AND {MEMBER.format(ws="p.workspace_id")}),
t AS (SELECT t.id, t.number, t.title, t.position FROM tasks t
      WHERE t.project_id = (SELECT id FROM p) AND (t.position, t.id) < ($3::float8, $4::bigint)
      ORDER BY t.position DESC, t.id DESC LIMIT 21),
page AS (SELECT * FROM t ORDER BY position DESC, id DESC LIMIT 20)
SELECT (SELECT json_build_object(
  'pageInfo', json_build_object('hasPreviousPage', (SELECT count(*) FROM t) > 20,
    'startCursor', (SELECT {BACKWARD_CURSOR} FROM page f ORDER BY f.position, f.id LIMIT 1)),
  'nodes', coalesce(json_agg(json_build_object(
    'id', {gid("Task", "n.id")}, 'key', p.key || '-' || n.number, 'title', n.title,
    'position', n.position) ORDER BY n.position, n.id), '[]'))
  FROM page n)::text FROM p
"""

# E-mails are shown as they are: the API shows one to members of a workspace the user belongs
# to (db/accounts.py), and the viewer and every listed user are members of this workspace.
MEMBERS = f"""
WITH w AS (SELECT w.id FROM workspaces w WHERE w.slug = $1 AND {MEMBER.format(ws="w.id")}),
m AS (SELECT m.user_id, m.role, m.created_at FROM memberships m
      WHERE m.workspace_id = (SELECT id FROM w) ORDER BY m.created_at, m.user_id LIMIT 50)
SELECT json_build_object(
  'totalCount', (SELECT count(*) FROM memberships c WHERE c.workspace_id = w.id),
  'nodes', (SELECT coalesce(json_agg(json_build_object(
    'role', m.role, 'joinedAt', {timestamp("m.created_at")},
    'user', json_build_object('id', {gid("User", "u.id")}, 'name', u.name, 'email', u.email))
    ORDER BY m.created_at, m.user_id), '[]')
    FROM m JOIN users u ON u.id = m.user_id))::text
FROM w
"""

CREATE = f"""
WITH p AS (
  UPDATE projects SET next_task_number = next_task_number + 1
  WHERE id = $1 AND EXISTS (SELECT 1 FROM memberships m WHERE m.workspace_id = projects.workspace_id
                            AND m.user_id = $3 AND m.role IN ('OWNER', 'ADMIN', 'MEMBER'))
  RETURNING id, workspace_id, key, next_task_number - 1 AS number),
ins AS (
  INSERT INTO tasks (workspace_id, project_id, number, title, position, creator_id)
  SELECT p.workspace_id, p.id, p.number, $2,
         (SELECT coalesce(max(position), 0) + 1024 FROM tasks WHERE project_id = p.id), $3
  FROM p RETURNING id, number, title, status, workspace_id, project_id),
act AS (
  INSERT INTO activities (workspace_id, project_id, task_id, task_key, kind, actor_user_id, changes)
  SELECT ins.workspace_id, ins.project_id, ins.id, p.key || '-' || ins.number, 'TASK_CREATED', $3,
         json_build_array(json_build_object('field', 'title', 'from', null, 'to', ins.title))
  FROM ins, p)
SELECT json_build_object('id', {gid("Task", "ins.id")}, 'key', p.key || '-' || ins.number,
  'title', ins.title, 'status', ins.status)::text FROM ins, p
"""

UPDATE = f"""
WITH old AS (
  SELECT t.id, t.title, t.workspace_id, t.project_id, t.number FROM tasks t
  WHERE t.id = $1 AND EXISTS (SELECT 1 FROM memberships m WHERE m.workspace_id = t.workspace_id
                              AND m.user_id = $3 AND m.role IN ('OWNER', 'ADMIN', 'MEMBER'))
  FOR UPDATE),
upd AS (
  UPDATE tasks SET title = $2, version = version + 1, updated_at = now()
  FROM old WHERE tasks.id = old.id RETURNING tasks.id, tasks.title, tasks.version),
act AS (
  INSERT INTO activities (workspace_id, project_id, task_id, task_key, kind, actor_user_id, changes)
  SELECT old.workspace_id, old.project_id, old.id,
         (SELECT key FROM projects WHERE id = old.project_id) || '-' || old.number,
         'TASK_UPDATED', $3,
         json_build_array(json_build_object('field', 'title', 'from', old.title, 'to', $2::text))
  FROM old)
SELECT json_build_object('id', {gid("Task", "upd.id")}, 'title', upd.title,
  'version', upd.version)::text FROM upd
"""


def escape_like(term: str) -> str:
    """LIKE's wildcards and escape character taken literally (as db/sql.py does)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _under(key: str, raw: str | None) -> bytes:
    """`{"<key>":<raw>}`, or null when the statement found no visible parent (no row)."""
    return b'{"' + key.encode() + b'":' + raw.encode() + b"}" if raw is not None else b"null"


def _tasks(nodes: str | None) -> bytes:
    """`{"tasks":{"nodes":[...]}}`, or null when the parent is not visible."""
    return _under("tasks", '{"nodes":' + nodes + "}" if nodes is not None else None)


class Floor:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None
        self.statements = 0
        # Read when the app is made, not when the module is imported: the runner sets it.
        self.secret = os.environ.get("SECRET_KEY", "")

    async def fetch(self, sql: str, *args: Any) -> str | None:
        assert self.pool is not None
        self.statements += 1
        return await self.pool.fetchval(sql, *args)  # type: ignore[no-any-return]

    def user(self, headers: dict[bytes, bytes]) -> int:
        token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        return int(jwt.decode(token, self.secret, algorithms=["HS256"], issuer="taskgraph")["sub"])

    async def answer(self, request: dict[str, Any], headers: dict[bytes, bytes]) -> bytes:
        name, variables = request.get("operationName"), request.get("variables") or {}
        if name == "Export":
            secret = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            prefix = "_".join(secret.split("_")[:2])
            digest = hashlib.sha256(secret.encode()).hexdigest()
            raw = await self.fetch(EXPORT, variables["slug"], prefix, digest)
            return b'{"data":{"workspace":' + _under("tasks", raw) + b"}}"
        user = self.user(headers)
        if name == "Board":
            raw = await self.fetch(BOARD, db_id(variables["id"]), user)
            return b'{"data":{"node":{"tasks":{"nodes":' + (raw or "[]").encode() + b"}}}}"
        if name == "Detail":
            raw = await self.fetch(DETAIL, db_id(variables["id"]), user)
            return b'{"data":{"node":' + (raw or "null").encode() + b"}}"
        if name == "Me":
            return b'{"data":' + (await self.fetch(ME, user) or "null").encode() + b"}"
        if name == "Filtered":
            raw = await self.fetch(
                FILTERED,
                db_id(variables["project"]),
                user,
                variables["status"],
                [db_id(a) for a in variables["assignees"]],
                sorted({db_id(label) for label in variables["labels"]}),
            )
            return b'{"data":{"node":' + _tasks(raw) + b"}}"
        if name == "Search":
            pattern = f"%{escape_like(variables['word'].strip())}%"
            raw = await self.fetch(SEARCH, variables["slug"], user, pattern)
            return b'{"data":{"workspace":' + _tasks(raw) + b"}}"
        if name == "Backward":
            values = keyset(variables["before"], BOARD_ORDER)
            if values is None:
                return b'{"errors":[{"message":"The cursor belongs to another ordering."}]}'
            position, task_id = values
            raw = await self.fetch(
                BACKWARD, db_id(variables["project"]), user, float(position), task_id
            )
            return b'{"data":{"node":' + _under("tasks", raw) + b"}}"
        if name == "Members":
            raw = await self.fetch(MEMBERS, variables["slug"], user)
            return b'{"data":{"workspace":' + _under("members", raw) + b"}}"
        if name == "Create":
            raw = await self.fetch(CREATE, db_id(variables["projectId"]), variables["title"], user)
            task = raw.encode() if raw else b"null"
            return b'{"data":{"createTask":{"task":' + task + b',"userErrors":[]}}}'
        if name == "Update":
            raw = await self.fetch(UPDATE, db_id(variables["id"]), variables["title"], user)
            task = raw.encode() if raw else b"null"
            return b'{"data":{"updateTask":{"task":' + task + b',"userErrors":[]}}}'
        return b'{"errors":[{"message":"unknown operation"}]}'

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.pool = await asyncpg.create_pool(self.dsn, min_size=4, max_size=10)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.pool is not None:
                        await self.pool.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.dsn, min_size=4, max_size=10)
        payload = await self.answer(orjson.loads(b"".join(chunks)), dict(scope["headers"]))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def create_app() -> Floor:
    """uvicorn factory: the database from DATABASE_URL (asyncpg form)."""
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    return Floor(url)
