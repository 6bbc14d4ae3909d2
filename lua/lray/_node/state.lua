-- The node manager's state, shared by its parts (objects, sched, actors,
-- main). One table so every part sees the same cluster.
return {
  node_id = nil,
  session_dir = nil,
  sock = nil,          -- unix socket path drivers and workers connect to
  tcp_addr = nil,      -- "host:port" when listening on TCP (lray start)
  shm_name = nil,
  region = nil,
  total = {},          -- resource -> fixed-point units (1.0 = 10000)
  avail = {},
  clients = {},        -- conn -> client {kind, conn, held = {id = true}, ...}
  workers = {},        -- worker id -> worker
  jobs = {},           -- job id -> {conn, namespace, path, cpath, log}
  owner_pid = nil,     -- the driver that started this node, if embedded
}
