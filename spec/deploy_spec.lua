-- The deployment examples (examples/deploy/, docs/deploy.md), checked as far
-- as one machine can: they need a Slurm allocation, a Kubernetes cluster or
-- systemd as init to run. The YAML is well formed (parsed by libyaml through
-- lua-yaml, in scripts/deps.sh), every `lray` command in them exists with
-- the options its --help lists, the Kubernetes resources match --num-cpus,
-- the units pass `systemd-analyze verify` and the Slurm script `bash -n`.
local sh = require("spec.helpers.shell")
local q, run, read = sh.q, sh.run, sh.read

local ROOT = os.getenv("PWD")
local DIR = ROOT .. "/examples/deploy"
local BIN = os.getenv("LRAY_BIN") or (ROOT .. "/build/lray")
if BIN:sub(1, 1) ~= "/" then BIN = ROOT .. "/" .. BIN end

-- Options the API.md contract gives `lray start` for joining a cluster,
-- which --help lists only once joining is built (see docs/deploy.md).
local JOIN_ONLY = { ["--address"] = true, ["--token"] = true }

local function have(cmd) return select(2, run("command -v " .. cmd)) == 0 end

local function files(sub, ext)
  local out = {}
  for f in sh.ok("ls " .. q(DIR .. "/" .. sub)):gmatch("[^\n]+") do
    if f:sub(-#ext) == ext then out[#out + 1] = DIR .. "/" .. sub .. "/" .. f end
  end
  assert(#out > 0, "no *" .. ext .. " in examples/deploy/" .. sub)
  return out
end

local function yaml_docs(path)
  local ok, docs = pcall(require("lyaml").load, read(path), { all = true })
  assert(ok, path .. ": " .. tostring(docs))
  assert(#docs > 0, path .. ": no YAML document")
  return docs
end

-- -- The `lray` command lines in the examples ---------------------------------

-- Every invocation as { where, words }, words[1] being the subcommand.
local function split(s)
  local w = {}
  for t in s:gmatch("%S+") do w[#w + 1] = t end
  return w
end

local function from_shell(path, out)
  local text = read(path):gsub("\\\n", " ")
  for line in text:gmatch("[^\n]+") do
    if not line:match("^%s*#") then
      -- `lray SUB ...` up to the end of the simple command; a driver run
      -- (`lray "$driver"`) is not a subcommand.
      for sub, rest in line:gmatch("%f[%w]lray%s+(%a%w*)([^|;&'\n]*)") do
        local w = split(rest)
        table.insert(w, 1, sub)
        out[#out + 1] = { where = path, words = w }
      end
    end
  end
end

local function from_unit(path, out)
  for key, cmd in read(path):gmatch("\n(Exec%a+)=([^\n]+)") do
    local w = split(cmd)
    assert(w[1]:match("/lray$"), path .. ": " .. key .. " does not run lray")
    table.remove(w, 1)
    out[#out + 1] = { where = path, words = w }
  end
end

-- Containers' commands, probes and hooks that run lray, with the container.
local function from_yaml(path, out)
  local function add(cmd, c)
    if type(cmd) == "table" and cmd[1] == "lray" then
      local w = {}
      for i = 2, #cmd do w[#w + 1] = tostring(cmd[i]) end
      out[#out + 1] = { where = path, words = w, container = c }
    end
  end
  for _, d in ipairs(yaml_docs(path)) do
    local pod = d.spec and d.spec.template and d.spec.template.spec
    for _, c in ipairs(pod and pod.containers or {}) do
      add(c.command, c)
      add(c.readinessProbe and c.readinessProbe.exec and c.readinessProbe.exec.command, c)
      local hook = c.lifecycle and c.lifecycle.preStop
      add(hook and hook.exec and hook.exec.command, c)
    end
  end
end

local function invocations()
  local out = {}
  for _, f in ipairs(files("slurm", ".sbatch")) do from_shell(f, out) end
  for _, f in ipairs(files("systemd", ".service")) do from_unit(f, out) end
  for _, f in ipairs(files("kubernetes", ".yaml")) do from_yaml(f, out) end
  return out
end

local function opts(words)
  local o = {}
  for i, w in ipairs(words) do
    local name = w:match("^(%-%-[%w-]+)")
    if name then o[name] = words[i + 1] or true end
  end
  return o
end

-- Subcommands `lray --help` lists, and options per subcommand.
local help = {}
local function options_of(sub)
  if not help[sub] then
    local out, status = run(q(BIN) .. " " .. sub .. " --help")
    assert(status == 0, "lray " .. sub .. " --help failed:\n" .. out)
    local set = {}
    for name in out:gmatch("\n%s+(%-%-[%w-]+)") do set[name] = true end
    help[sub] = set
  end
  return help[sub]
end

describe("examples/deploy", function()
  -- Read inside each test, so a file that does not parse fails a test.
  local calls
  before_each(function() calls = calls or invocations() end)

  it("names lray commands that exist, with options their --help lists", function()
    local top = sh.ok(q(BIN) .. " --help")
    local seen = {}
    for _, c in ipairs(calls) do
      local sub = c.words[1]
      assert(top:match("\n  " .. sub .. " "), c.where .. ": no subcommand lray " .. sub)
      seen[sub] = true
      local listed = options_of(sub)
      for name in pairs(opts(c.words)) do
        assert(listed[name] or (sub == "start" and JOIN_ONLY[name]),
          ("%s: lray %s %s is not in `lray %s --help`"):format(c.where, sub, name, sub))
      end
    end
    assert(seen.start and seen.stop and seen.status, "start, stop and status all appear")
  end)

  it("gives --address and --token as lray start --help lists them", function()
    local missing = {}
    for name in pairs(JOIN_ONLY) do
      if not options_of("start")[name] then missing[#missing + 1] = name end
    end
    if #missing > 0 then
      table.sort(missing)
      pending("lray start --help does not list " .. table.concat(missing, ", ")
        .. " yet (joining is not built); the examples follow API.md's contract")
    end
  end)

  it("starts every node with --host and either --head or --address", function()
    local n = 0
    for _, c in ipairs(calls) do
      if c.words[1] == "start" then
        local o = opts(c.words)
        n = n + 1
        -- Without --host a node listens on 127.0.0.1 only.
        assert(o["--host"], c.where .. ": lray start without --host")
        assert((o["--head"] ~= nil) ~= (o["--address"] ~= nil), c.where .. ": --head xor --address")
        -- The token travels in $LRAY_TOKEN: a command line is public (ps).
        assert(not o["--token"], c.where .. ": the token on a command line")
      end
    end
    assert.is_true(n >= 5)
  end)

  it("has well-formed Kubernetes YAML with the head's Service and the token Secret", function()
    local kinds, secrets = {}, 0
    for _, f in ipairs(files("kubernetes", ".yaml")) do
      for _, d in ipairs(yaml_docs(f)) do
        assert(d.apiVersion and d.kind and d.metadata and d.metadata.name, f .. ": not a manifest")
        kinds[d.kind .. "/" .. d.metadata.name] = d
        local pod = d.spec and d.spec.template and d.spec.template.spec
        for _, c in ipairs(pod and pod.containers or {}) do
          for _, e in ipairs(c.env or {}) do
            local ref = e.valueFrom and e.valueFrom.secretKeyRef
            if e.name == "LRAY_TOKEN" and ref and ref.name == "lray-token" then secrets = secrets + 1 end
          end
        end
      end
    end
    assert(kinds["Deployment/lray-head"] and kinds["Deployment/lray-worker"])
    local svc = assert(kinds["Service/lray-head"], "the head's Service")
    local ports = {}
    for _, p in ipairs(svc.spec.ports) do ports[p.name] = p.port end
    assert.same({ cluster = 6380, dashboard = 8265 }, ports)
    assert.equal(2, secrets)
    -- Workers join the head through the Service's name and port.
    for _, c in ipairs(calls) do
      if c.container and c.words[1] == "start" and not opts(c.words)["--head"] then
        assert.equal("lray-head:6380", opts(c.words)["--address"])
      end
    end
  end)

  it("requests the CPUs that --num-cpus offers, and shm for the store", function()
    local n = 0
    for _, c in ipairs(calls) do
      if c.container and c.words[1] == "start" then
        local o, r = opts(c.words), c.container.resources
        assert.equal(o["--num-cpus"], tostring(r.requests.cpu), c.where)
        assert.equal(o["--num-cpus"], tostring(r.limits.cpu), c.where)
        local shm = false
        for _, m in ipairs(c.container.volumeMounts) do shm = shm or m.mountPath == "/dev/shm" end
        assert(shm, c.where .. ": /dev/shm is 64 MiB in a pod; the store needs a volume")
        n = n + 1
      end
    end
    assert.equal(2, n)
  end)

  it("has systemd units that systemd-analyze verify accepts", function()
    if not have("systemd-analyze") then
      return pending("systemd-analyze is not installed (the systemd package is large and"
        .. " not in scripts/deps.sh): the units are unchecked")
    end
    -- verify checks that ExecStart's program exists and that the
    -- Documentation= man page is found: point them at this checkout.
    local tmp = os.tmpname()
    os.remove(tmp)
    sh.ok("mkdir -p " .. q(tmp .. "/man/man1") .. " && ln -s " .. q(ROOT .. "/docs/lray.1")
      .. " " .. q(tmp .. "/man/man1/lray.1"))
    local units = {}
    for _, f in ipairs(files("systemd", ".service")) do
      local dst = tmp .. "/" .. f:match("[^/]+$")
      sh.write(dst, (read(f):gsub("/usr/local/bin/lray", BIN)))
      units[#units + 1] = q(dst)
    end
    local out, status = run("MANPATH=" .. q(tmp .. "/man") .. " systemd-analyze verify "
      .. table.concat(units, " "))
    sh.ok("rm -rf " .. q(tmp))
    assert(status == 0, "systemd-analyze verify:\n" .. out)
    assert.equal("", out)
  end)

  it("has a Slurm script that bash -n (and shellcheck, when installed) accepts", function()
    for _, f in ipairs(files("slurm", ".sbatch")) do
      sh.ok("bash -n " .. q(f))
      if have("shellcheck") then sh.ok("shellcheck " .. q(f)) end
    end
  end)

  it("is explained, file by file, in docs/deploy.md", function()
    local doc = read(ROOT .. "/docs/deploy.md")
    for _, sub in ipairs({ "slurm", "kubernetes", "systemd" }) do
      for f in sh.ok("ls " .. q(DIR .. "/" .. sub)):gmatch("[^\n]+") do
        assert(doc:find("examples/deploy/" .. sub .. "/" .. f, 1, true), f .. " is not in docs/deploy.md")
      end
    end
  end)
end)
