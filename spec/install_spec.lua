-- Installing lray (API.md "Installing", docs/install.md): make install into
-- a prefix and run a script from elsewhere with only that bin/ on PATH;
-- DESTDIR staging; make uninstall; luarocks make into a temporary tree; the
-- man page (and that it covers every subcommand and option); and
-- docs/testing.md's example project run by plain `busted` under the
-- installed lray. Uses the build/lray that `make` made: install copies it.
local ROOT = os.getenv("PWD")

local shell = require("spec.helpers.shell")
local q, run, ok, read, write = shell.q, shell.run, shell.ok, shell.read, shell.write

local function exists(path) return os.execute("test -e " .. q(path)) == 0 end

-- `make` from a spec that `make test` runs: the parent's jobserver is not ours.
local MAKE = "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C " .. q(ROOT)

-- A clean environment: no LRAY_*/LUA_* variables, PATH = bin only (plus
-- LRAY_TMPDIR, so clusters stay apart from other test runs on this machine).
local function clean_env(path)
  local tmp = os.getenv("LRAY_TMPDIR")
  return "env -i HOME=" .. q(os.getenv("HOME") or "/root") .. " PATH=" .. q(path)
    .. (tmp and " LRAY_TMPDIR=" .. q(tmp) or "")
end

-- A driver script that runs tasks and uses Debian's lua-cjson in the driver
-- and in a task.
local SCRIPT = [[
local lray = require("lray")
local cjson = require("cjson")
local square = lray.remote(function(x) return x * x end)
local refs = {}
for i = 1, 4 do refs[i] = square.remote(i) end
print("squares " .. table.concat(lray.get(refs), " "))
local enc = lray.remote(function(t) return require("cjson").encode(t) end)
print("cjson " .. lray.get(enc.remote({ 1, 2 })) .. " " .. cjson.encode({ ok = true }))
print("from " .. package.searchpath("lray", package.path))
]]

local tmp

setup(function()
  tmp = os.tmpname()
  os.remove(tmp)
  ok("mkdir -p " .. q(tmp .. "/elsewhere"))
  write(tmp .. "/elsewhere/job.lua", SCRIPT)
end)

teardown(function()
  if tmp then os.execute("rm -rf " .. q(tmp)) end
end)

describe("make install", function()
  local prefix

  setup(function()
    prefix = tmp .. "/prefix"
    ok(MAKE .. " install PREFIX=" .. q(prefix))
  end)

  it("installs the binary, the modules, the man page and the definitions under PREFIX", function()
    for _, f in ipairs({ "bin/lray", "share/lua/5.1/lray/init.lua", "share/lua/5.1/lray/testing.lua",
      "share/lua/5.1/lray/util/queue.lua", "share/lua/5.1/lray/_worker.lua",
      "share/lua/5.1/lray/luacheck_std.lua", "share/man/man1/lray.1",
      "share/lray/library/lray.d.lua", "share/lray/library/lray.testing.d.lua",
      "share/lray/config.json" }) do
      assert.is_true(exists(prefix .. "/" .. f), "not installed: " .. f)
    end
    assert.are.equal("", ok("find " .. q(prefix) .. " -type f ! -perm -444"))
    -- Every module of the checkout, and nothing else.
    local mods = ok("cd " .. q(ROOT .. "/lua") .. " && find lray -name '*.lua' | sort")
    assert.are.equal(mods, ok("cd " .. q(prefix .. "/share/lua/5.1") .. " && find lray -name '*.lua' | sort"))
  end)

  it("runs a script from another directory with only PREFIX/bin on PATH", function()
    local out = ok("cd " .. q(tmp .. "/elsewhere") .. " && " .. clean_env(prefix .. "/bin") .. " lray job.lua")
    assert.matches("squares 1 4 9 16\n", out, 1, true)
    assert.matches('cjson [1,2] {"ok":true}\n', out, 1, true)
    assert.matches("from " .. prefix .. "/share/lua/5.1/lray/init.lua\n", out, 1, true)
  end)

  it("gives its version and fails plainly on a missing script", function()
    local out = ok(clean_env(prefix .. "/bin") .. " lray --version")
    assert.matches("^lray %S+ %(LuaJIT [^,]+, libuv [%d.]+%)\n$", out)
    local err, status = run("cd " .. q(tmp) .. " && " .. clean_env(prefix .. "/bin") .. " lray nope.lua")
    assert.are.equal(1, status)
    assert.matches("cannot open nope.lua", err, 1, true)
  end)

  it("installs a man page that man -l renders with every subcommand and option", function()
    local page = ok("MANWIDTH=100 man -l " .. q(prefix .. "/share/man/man1/lray.1") .. " 2>&1")
    for _, s in ipairs({ "NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "ENVIRONMENT", "FILES", "EXAMPLES" }) do
      assert.matches("\n" .. s .. "\n", page, 1, true)
    end
    -- The subcommands the binary dispatches (core/main/lray.c) ...
    local src = read(ROOT .. "/core/main/lray.c")
    local list = assert(src:match("subcommands%[%]%s*=%s*(%b{})"))
    local n = 0
    for cmd in list:gmatch('"([%w_]+)"') do
      n = n + 1
      assert.matches("lray " .. cmd, page, 1, true)
    end
    assert.is_true(n >= 5)
    -- ... the options of `lray start` (lua/lray/cmd.lua) and microbenchmark ...
    local start = assert(read(ROOT .. "/lua/lray/cmd.lua"):match("local START = (%b{})"))
    for opt in start:gmatch("([%w_]+) = \"") do
      assert.matches("--" .. opt:gsub("_", "-"), page, 1, true)
    end
    for opt in read(ROOT .. "/lua/lray/bench.lua"):gmatch('a == "(%-%-[%w-]+)"') do
      assert.matches(opt, page, 1, true)
    end
    -- ... and the interpreter's options (core/main/cli.c's usage text).
    for opt in read(ROOT .. "/core/main/cli.c"):gmatch('"  (%-%S*)') do
      assert.matches("\n       " .. opt:sub(1, 2), page, 1, true)
    end
    for _, env in ipairs({ "LRAY_ADDRESS", "LRAY_TMPDIR", "LRAY_HOME", "LRAY_HISTORY", "LUA_PATH", "LUA_INIT" }) do
      assert.matches(env, page, 1, true)
    end
  end)

  it("runs docs/testing.md's project with plain busted under the installed lray", function()
    local project = tmp .. "/project"
    local n = 0
    for file, body in read(ROOT .. "/docs/testing.md"):gmatch("```lua\n%-%- file: (%S+)\n(.-)```") do
      write(project .. "/" .. file, body)
      n = n + 1
    end
    assert.are.equal(3, n)
    local out = ok("cd " .. q(project) .. " && " .. clean_env(prefix .. "/bin:/usr/bin:/bin") .. " busted")
    assert.matches("3 successes / 0 failures / 0 errors / 0 pending", out, 1, true)
  end)

  it("make uninstall removes every file it installed", function()
    ok(MAKE .. " uninstall PREFIX=" .. q(prefix))
    assert.are.equal("", ok("find " .. q(prefix) .. " -type f"))
    assert.is_false(exists(prefix .. "/share/lua/5.1/lray"))
    assert.is_false(exists(prefix .. "/share/lray"))
  end)
end)

describe("make install DESTDIR=", function()
  it("stages everything under DESTDIR/PREFIX, and the staged binary runs", function()
    local stage = tmp .. "/stage"
    ok(MAKE .. " install DESTDIR=" .. q(stage) .. " PREFIX=/usr")
    local top = ok("ls " .. q(stage))
    assert.are.equal("usr\n", top)
    for _, f in ipairs({ "usr/bin/lray", "usr/share/lua/5.1/lray/init.lua", "usr/share/man/man1/lray.1",
      "usr/share/lray/library/lray.d.lua" }) do
      assert.is_true(exists(stage .. "/" .. f), "not staged: " .. f)
    end
    local out = ok("cd " .. q(tmp .. "/elsewhere") .. " && " .. clean_env(stage .. "/usr/bin") .. " lray job.lua")
    assert.matches("squares 1 4 9 16\n", out, 1, true)
    assert.matches("from " .. stage .. "/usr/share/lua/5.1/lray/init.lua\n", out, 1, true)
  end)
end)

describe("luarocks make", function()
  it("installs a working lray into a temporary tree, and luarocks remove takes it out", function()
    local tree = tmp .. "/rocks"
    ok("cd " .. q(ROOT) .. " && env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS luarocks make --tree="
      .. q(tree) .. " lray-scm-1.rockspec")
    local out = ok("cd " .. q(tmp .. "/elsewhere") .. " && " .. clean_env(tree .. "/bin") .. " lray job.lua")
    assert.matches("squares 1 4 9 16\n", out, 1, true)
    assert.matches('cjson [1,2] {"ok":true}\n', out, 1, true)
    assert.matches("from " .. tree .. "/share/lua/5.1/lray/init.lua\n", out, 1, true)
    assert.matches("lray%s+scm%-1", ok("luarocks list --tree=" .. q(tree) .. " lray"))
    ok("luarocks remove --tree=" .. q(tree) .. " lray")
    assert.is_false(exists(tree .. "/bin/lray"))
    assert.is_false(exists(tree .. "/share/lua/5.1/lray/init.lua"))
  end)
end)
