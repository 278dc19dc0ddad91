-- ARGV[5] app ('' = any), [6] errcode ('' = any), [7] cursor member ('' = newest),
-- [8] limit, [9] most entries to look at. Returns {next cursor or '', {member of each}, message...}
-- (the members let Python merge several apps' pages in time order). Looks one match past the
-- page so the last page says so (cursor '').
local app, errcode, cursor, limit, budget = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]),
  tonumber(ARGV[9])
local dk = P .. ':dead'
local top = '+'
if cursor ~= '' then top = '(' .. cursor end
local page, members_out, last, more = {''}, {}, '', false
while budget > 0 and not more do
  local members = redis.call('ZREVRANGEBYLEX', dk, top, '-', 'LIMIT', 0, math.min(200, budget))
  if #members == 0 then break end
  budget = budget - #members
  for _, member in ipairs(members) do
    top = '(' .. member
    local id = string.sub(member, DEAD_ID_AT)
    local m = load(id)
    if not m or m.status ~= 'dead' then
      redis.call('ZREM', dk, member)
    elseif (app == '' or m.app == app) and (errcode == '' or m.raw[IX.last_errcode] == errcode) then
      if #page > limit then
        more = true
        break
      end
      page[#page + 1] = public(m)
      members_out[#members_out + 1] = member
      last = member
    end
  end
end
if budget <= 0 and not more then
  more = true
  last = string.sub(top, 2)
end
if more then page[1] = last end
table.insert(page, 2, members_out)
return page
