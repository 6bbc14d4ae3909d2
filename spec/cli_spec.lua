-- The `lray` command as a Lua interpreter (API.md, "The `lray` command"):
-- scripts and their arg table, -e/-l/-v/-i/-, errors and exit status, busted
-- under lray, and the REPL both piped (-i) and on a terminal (script -qc).
local BIN = os.getenv("LRAY_BIN") or "build/lray"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command line; returns its stdout+stderr and exit status.
local function run(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return out:gsub("__status=%d+%s*$", ""), status
end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local tmpdir

setup(function()
  tmpdir = os.tmpname()
  os.remove(tmpdir)
  assert(os.execute("mkdir -p " .. q(tmpdir)))
end)

teardown(function()
  os.execute("rm -rf " .. q(tmpdir))
end)

describe("lray script", function()
  it("gets arg and ... like luajit", function()
    local script = tmpdir .. "/args.lua"
    write_file(script, "print(arg[0], arg[-1], arg[1], arg[2], "
      .. "select('#', ...), ...)\n")
    local out, status = run(q(BIN) .. " " .. q(script) .. " a 'b c'")
    assert.are.equal(0, status)
    assert.are.equal(table.concat({ script, BIN, "a", "b c", "2", "a", "b c" },
      "\t") .. "\n", out)
  end)

  it("puts options before the script at negative indices", function()
    local script = tmpdir .. "/neg.lua"
    write_file(script, "print(arg[-3], arg[-2], arg[-1], arg[0], #arg)\n")
    local out = run(q(BIN) .. " -e 'x=1' " .. q(script))
    assert.are.equal(table.concat({ BIN, "-e", "x=1", script, "0" }, "\t")
      .. "\n", out)
  end)

  it("skips a #! first line", function()
    local script = tmpdir .. "/shebang.lua"
    write_file(script, "#!/usr/bin/env lray\nprint('shebang ok')\n")
    local out, status = run(q(BIN) .. " " .. q(script))
    assert.are.equal(0, status)
    assert.are.equal("shebang ok\n", out)
  end)

  it("runs -e chunks in order, then the script", function()
    local script = tmpdir .. "/after_e.lua"
    write_file(script, "print('script', x)\n")
    local out, status = run(q(BIN) .. " -e 'x = 1' -e 'x = x + 1; print(x)' "
      .. q(script))
    assert.are.equal(0, status)
    assert.are.equal("2\nscript\t2\n", out)
  end)

  it("runs -e without reading stdin", function()
    local out, status = run("echo 'print(\"stdin ran\")' | " .. q(BIN)
      .. " -e 'print(40 + 2)'")
    assert.are.equal(0, status)
    assert.are.equal("42\n", out)
  end)

  it("requires -l modules into a global", function()
    write_file(tmpdir .. "/clispecmod.lua", "return { answer = 42 }\n")
    local out, status = run("LUA_PATH=" .. q(tmpdir .. "/?.lua;;") .. " "
      .. q(BIN) .. " -l clispecmod -e 'print(clispecmod.answer)'")
    assert.are.equal(0, status)
    assert.are.equal("42\n", out)
  end)

  it("prints its version with -v", function()
    local out, status = run(q(BIN) .. " -v < /dev/null")
    assert.are.equal(0, status)
    assert.matches("^lray 0%.1%.0 %(LuaJIT 2%.1[^\n]*, libuv %d+%.%d+%.%d+%)\n$", out)
  end)

  it("prints lray's, LuaJIT's and libuv's versions with --version, and exits", function()
    local out, status = run(q(BIN) .. " --version < /dev/null")
    assert.are.equal(0, status)
    assert.matches("^lray 0%.1%.0 %(LuaJIT 2%.1[^\n]*, libuv %d+%.%d+%.%d+%)\n$", out)
    out, status = run(q(BIN) .. " --version -e 'print(\"after\")'")
    assert.are.equal(0, status)
    assert.matches("^lray [^\n]+\nafter\n$", out)
    out, status = run(q(BIN) .. " --versio")
    assert.are.equal(1, status)
    assert.matches("unrecognized option '%-%-versio'", out)
  end)

  it("reads the script from stdin with -", function()
    local out, status = run("echo 'print(\"from stdin\", ...)' | " .. q(BIN)
      .. " - x y")
    assert.are.equal(0, status)
    assert.are.equal("from stdin\tx\ty\n", out)
  end)

  it("reads the script from stdin when it is not a terminal", function()
    local out, status = run("echo 'print(\"piped\")' | " .. q(BIN))
    assert.are.equal(0, status)
    assert.are.equal("piped\n", out)
  end)

  it("exits 1 with the message and a traceback on error", function()
    local script = tmpdir .. "/boom.lua"
    write_file(script, "local function f() error('boom') end\nf()\n")
    local out, status = run(q(BIN) .. " " .. q(script))
    assert.are.equal(1, status)
    assert.matches("^lray: [^\n]*boom%.lua:1: boom\nstack traceback:\n", out)
    assert.matches("in function 'f'", out, 1, true)
  end)

  it("prints error tables through __tostring", function()
    local out, status = run(q(BIN) .. " -e " .. q("error(setmetatable({}, "
      .. "{ __tostring = function() return 'TaskError: bad' end }))"))
    assert.are.equal(1, status)
    assert.matches("^lray: TaskError: bad\nstack traceback:", out)
  end)

  it("an uncaught remote error prints the remote traceback, then only the driver's own frames", function()
    local script = tmpdir .. "/remote_boom.lua"
    write_file(script, table.concat({
      "local lray = require('lray')",
      "lray.init({num_cpus = 1, num_gpus = 0})",
      "local function run() local r = lray.remote(function(x)",
      "  error('boom ' .. x)",
      "end).remote(1); local v = lray.get(r); return v end",
      "run()", "" }, "\n"))
    local out, status = run(q(BIN) .. " " .. q(script))
    assert.are.equal(1, status)
    assert.matches("^lray: TaskError: task '[^']*' failed: [^\n]*remote_boom%.lua:4: boom 1\n"
      .. "stack traceback:\n\t%[C%]: in function 'error'\n\t[^\n]*remote_boom%.lua:4: in function"
      .. " <[^\n]*remote_boom%.lua:3>\n"
      .. "driver stack traceback:\n\t[^\n]*remote_boom%.lua:5: in function 'run'\n"
      .. "\t[^\n]*remote_boom%.lua:6: in main chunk\n$", out)
    assert.is_nil(out:find("lray/", 1, true), out)
  end)

  it("a misuse error shows the caller's frames without lray's", function()
    local out, status = run(q(BIN) .. " -e " .. q("local lray = require('lray')\n"
      .. "local function f() local v = lray.get('nope'); return v end\nf()"))
    assert.are.equal(1, status)
    assert.matches("^lray: ValueError: %(command line%):2: lray.get expects an ObjectRef[^\n]*\n"
      .. "stack traceback:\n\t%(command line%):2: in function 'f'\n\t%(command line%):3: in main chunk\n$", out)
  end)

  it("exits 1 on a syntax error and on a missing file", function()
    local out, status = run(q(BIN) .. " -e 'x ='")
    assert.are.equal(1, status)
    assert.matches("^lray: %(command line%):1:", out)
    out, status = run(q(BIN) .. " " .. q(tmpdir .. "/missing.lua"))
    assert.are.equal(1, status)
    assert.matches("^lray: cannot open", out)
  end)

  it("exits 1 silently on error(nil), as busted expects", function()
    local out, status = run(q(BIN) .. " -e 'error()'")
    assert.are.equal(1, status)
    assert.are.equal("", out)
  end)

  it("exits with the os.exit status", function()
    local _, status = run(q(BIN) .. " -e 'os.exit(3)'")
    assert.are.equal(3, status)
    -- busted ends with os.exit(code, true), which closes the state first.
    _, status = run(q(BIN) .. " -e 'os.exit(4, true)'")
    assert.are.equal(4, status)
  end)

  it("rejects unknown and unsupported options", function()
    local out, status = run(q(BIN) .. " -Z < /dev/null")
    assert.are.equal(1, status)
    assert.matches("usage: lray", out, 1, true)
    out, status = run(q(BIN) .. " -e < /dev/null")
    assert.are.equal(1, status)
    assert.matches("usage: lray", out, 1, true)
    out, status = run(q(BIN) .. " -b x.lua x.out < /dev/null")
    assert.are.equal(1, status)
    assert.matches("unsupported option", out, 1, true)
  end)

  it("passes -j to LuaJIT", function()
    local out, status = run(q(BIN) .. " -joff -e 'print((jit.status()))'")
    assert.are.equal(0, status)
    assert.are.equal("false\n", out)
  end)

  it("runs busted", function()
    local out, status = run(q(BIN) .. " /usr/bin/busted --version")
    assert.are.equal(0, status)
    assert.matches("^%d+%.%d+", out)
  end)
end)

describe("lray REPL", function()
  -- Piped input: no line editing, but the same evaluation and printing.
  local function repl(input, opts)
    local path = tmpdir .. "/input.txt"
    write_file(path, input)
    return run("LRAY_HISTORY= " .. q(BIN) .. " -i " .. (opts or "") .. " < "
      .. q(path))
  end

  it("prints expression values, tab-separated", function()
    local out, status = repl("1 + 1\n=2, 'two', nil\n")
    assert.are.equal(0, status)
    assert.matches("> 2\n", out, 1, true)
    assert.matches("> 2\ttwo\tnil\n", out, 1, true)
  end)

  it("continues incomplete input on the next line", function()
    local out = repl("function f(x)\n  return x * 2\nend\nf(21)\n"
      .. "{\n  1,\n  2 }\n")
    assert.matches("> >> >> > 42\n", out, 1, true)
    assert.matches("{ 1, 2 }\n", out, 1, true)
  end)

  it("pretty-prints tables", function()
    local out = repl("t = { 1, 'two', k = { z = true }, [1.5] = 'x' } "
      .. "t.self = t\nt\n"
      .. "setmetatable({}, { __tostring = function() return 'Ref(1)' end })\n"
      .. "{ r = setmetatable({}, { __tostring = function() return 'Ref(2)' "
      .. "end }) }\n"
      .. "{ a = { b = { c = { d = { e = 1 } } } } }\n")
    assert.matches('{ 1, "two", [1.5] = "x", k = { z = true }, '
      .. "self = <cycle> }\n", out, 1, true)
    assert.matches("> Ref(1)\n", out, 1, true)
    assert.matches("{ r = Ref(2) }\n", out, 1, true)
    assert.matches("{ a = { b = { c = { d = {...} } } } }\n", out, 1, true)
  end)

  it("elides long tables", function()
    local out = repl("local t = {} for i = 1, 100 do t[i] = i end return t\n")
    assert.matches("{\n  1, 2, 3,", out, 1, true)
    assert.matches("49, 50,\n  ... (50 more)\n}", out, 1, true)
  end)

  it("reports errors and goes on", function()
    local out, status = repl("error('oops')\n"
      .. "error(setmetatable({}, { __tostring = function() return 'E!' end }))"
      .. "\nx y\nprint('still here')\n")
    assert.are.equal(0, status)
    assert.matches("stdin:1: oops\nstack traceback:", out, 1, true)
    assert.matches("E!\nstack traceback:", out, 1, true)
    assert.matches("stdin:1: '=' expected near 'y'", out, 1, true)
    assert.matches("still here\n", out, 1, true)
  end)

  it("runs the script first with -i", function()
    local script = tmpdir .. "/pre.lua"
    write_file(script, "greeting = 'hello'\n")
    local out = repl("greeting\n", q(script))
    assert.matches("> hello\n", out, 1, true)
  end)

  it("reports input that ends inside a statement", function()
    local out, status = repl("if true then\n")
    assert.are.equal(0, status)
    assert.matches("'end' expected near '<eof>'", out, 1, true)
  end)

  -- On a terminal: libedit, history file. Needs util-linux `script`.
  local has_script = os.execute("command -v script > /dev/null 2>&1")
  has_script = has_script == true or has_script == 0

  it("works on a terminal and keeps history #tty", function()
    if not has_script then
      pending("needs script(1)")
      return
    end
    local hist = tmpdir .. "/history"
    local input = tmpdir .. "/tty_input.txt"
    write_file(input, "1 + 2\nfunction g(x)\n  return x * 3\nend\ng(5)\n")
    local out, status = run("LRAY_HISTORY=" .. q(hist) .. " timeout 20 script"
      .. " -qec " .. q(q(BIN)) .. " /dev/null < " .. q(input))
    assert.are.equal(0, status)
    assert.matches("> 1 %+ 2\r?\n3\r?\n", out)
    assert.matches(">> end\r?\n> g%(5%)\r?\n15\r?\n", out)
    local f = assert(io.open(hist))
    local saved = f:read("*a")
    f:close()
    assert.matches("^_HiStOrY_V2_\n1\\040%+\\0402\n", saved)
    assert.matches("\ng%(5%)\n$", saved)
  end)
end)
