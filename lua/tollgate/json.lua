-- Minimal JSON decoder for scripts (objects, arrays, strings with escapes,
-- numbers, true, false, null -> nil). decode(s) returns the value, or nil
-- and an error message; it never raises on bad input.
local M = {}
local byte, sub, find, char = string.byte, string.sub, string.find, string.char

local escapes = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                  r = '\r', t = '\t' }

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xc0 + math.floor(cp / 64), 0x80 + cp % 64) end
  return char(0xe0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local value

-- bytes, not one-character strings: no string is made per character
local SP, TAB, CR, LF = 32, 9, 13, 10
local QUOTE, LBRACE, RBRACE, LBRACKET, RBRACKET, COLON, COMMA = 34, 123, 125, 91, 93, 58, 44

local function skip(s, i)
  local b = byte(s, i)
  while b == SP or b == LF or b == CR or b == TAB do
    i = i + 1
    b = byte(s, i)
  end
  return b and i or #s + 1
end

local function str(s, i) -- i at the opening quote
  local out, j = {}, i + 1
  while true do
    local k = find(s, '["\\]', j)
    if not k then error("unterminated string") end
    out[#out + 1] = sub(s, j, k - 1)
    if byte(s, k) == QUOTE then return table.concat(out), k + 1 end
    local e = sub(s, k + 1, k + 1)
    if e == "u" then
      local hex = sub(s, k + 2, k + 5)
      if not find(hex, "^%x%x%x%x$") then error("bad \\u escape") end
      out[#out + 1] = utf8(tonumber(hex, 16))
      j = k + 6
    elseif escapes[e] then
      out[#out + 1] = escapes[e]
      j = k + 2
    else
      error("bad escape")
    end
  end
end

function value(s, i)
  i = skip(s, i)
  local c = byte(s, i)
  if c == LBRACE then
    local t = {}
    i = skip(s, i + 1)
    if byte(s, i) == RBRACE then return t, i + 1 end
    while true do
      if byte(s, i) ~= QUOTE then error("expected a key") end
      local k
      k, i = str(s, i)
      i = skip(s, i)
      if byte(s, i) ~= COLON then error("expected ':'") end
      t[k], i = value(s, i + 1)
      i = skip(s, i)
      local d = byte(s, i)
      if d == RBRACE then return t, i + 1 end
      if d ~= COMMA then error("expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == LBRACKET then
    local t, n = {}, 0
    i = skip(s, i + 1)
    if byte(s, i) == RBRACKET then return t, i + 1 end
    while true do
      n = n + 1
      t[n], i = value(s, i)
      i = skip(s, i)
      local d = byte(s, i)
      if d == RBRACKET then return t, i + 1 end
      if d ~= COMMA then error("expected ',' or ']'") end
      i = i + 1
    end
  elseif c == QUOTE then
    return str(s, i)
  elseif find(s, "^true", i) then
    return true, i + 4
  elseif find(s, "^false", i) then
    return false, i + 5
  elseif find(s, "^null", i) then
    return nil, i + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not num or num == "" or not tonumber(num) then error("unexpected character") end
  return tonumber(num), i + #num
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local ok, v, i = pcall(value, s, 1)
  if not ok then return nil, (tostring(v):gsub("^.-:%d+: ", "")) end
  if skip(s, i) <= #s then return nil, "trailing characters" end
  return v
end

return M
