std = "luajit"
globals = { "lray" }
max_line_length = 120
ignore = { "212/self", "213" }
files["spec"] = { std = "+busted" }
files["chaos"] = { std = "+busted" }
files["examples"] = { globals = { "arg" } }
-- Specs keep values alive on purpose and share small helpers.
files["spec"].ignore = { "241", "211/msg" }
files["examples"].max_line_length = 130
files["examples"].ignore = { "212" }
