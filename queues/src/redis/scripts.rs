//! The Lua scripts that make ack, release, extend and claim atomic on the server.
//!
//! Why scripts: `XACK` and `XCLAIM` do not ask who holds a message. A consumer whose lease ran out, and whose
//! message another consumer has since claimed, would ack (or re-claim) it from under the new holder: exactly
//! the double processing the contract forbids. Each script first reads the entry's pending-list record
//! (`XPENDING key group id id 1`: owner and delivery counter) and acts only when both still match the
//! receipt, all in one atomic step. A claim raises the counter, so a message that went away and came back
//! to the same consumer does not match its old receipt either.
//!
//! Every script takes `KEYS[1]` = the stream, `ARGV[1]` = the group, `ARGV[2]` = this consumer's name.

/// Shared by the scripts: ownership, and trimming what every consumer is done with.
///
/// The trim keeps `XLEN` close to what is left to do (KEDA's `streamLength` reads it): everything below the
/// oldest pending entry, or up to the last delivered one when nothing is pending, is acked, so it goes.
/// `XTRIM MINID`, not `XDEL`: a deleted entry at or after the group's last-delivered id makes Redis 7 report
/// the group's `lag` as nil (it can no longer count it), and `lag` is what KEDA's `lagCount` reads.
const PRELUDE: &str = r#"
local function owned(id, n)
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  return p[1] ~= nil and p[1][2] == ARGV[2] and p[1][4] == n
end
local function trim()
  local s = redis.call('XPENDING', KEYS[1], ARGV[1])
  local minid
  if s[1] > 0 then
    minid = s[2]
  else
    local last
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local name, id
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] end
        if g[j] == 'last-delivered-id' then id = g[j + 1] end
      end
      if name == ARGV[1] then last = id end
    end
    if not last then return end
    local ms, seq = string.match(last, '^(%d+)-(%d+)$')
    if not ms then return end
    minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
  end
  redis.call('XTRIM', KEYS[1], 'MINID', minid)
end
"#;

/// `ARGV[3..]`: pairs of (id, delivery counter). Acks the ones still held; returns `{acked, lost, gone}`,
/// `gone` listing the positions (from 0) of entries pending to no one: acked already, by us (an ack whose
/// reply was lost, sent again) or by whoever held them after us. The caller tells which by its lease.
pub const ACK: &str = r#"
local acked, lost, gone = 0, 0, {}
for i = 3, #ARGV, 2 do
  if owned(ARGV[i], tonumber(ARGV[i + 1])) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    acked = acked + 1
  elseif redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1] == nil then
    gone[#gone + 1] = (i - 3) / 2
  else
    lost = lost + 1
  end
end
if acked > 0 then trim() end
return {acked, lost, gone}
"#;

/// `ARGV[3..]`: triples of (id, delivery counter, idle ms). Gives back the ones still held; returns how many.
///
/// idle < 0 (release now): the entry is copied to the stream's end with its `deliveries` field raised by its
/// counter, and the original acked, in one step. It is then plain backlog (`lag`), read by the next
/// `XREADGROUP` of any consumer, whatever its lease; the count of earlier deliveries travels with it.
/// idle >= 0 (release later): the entry stays pending to us, with its idle time set (`XCLAIM … IDLE`, `JUSTID`
/// so the counter does not rise) so that it reaches the claim threshold (the lease) after the delay.
pub const RELEASE: &str = r#"
local released = 0
for i = 3, #ARGV, 3 do
  local id, n, idle = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if owned(id, n) then
    if idle < 0 then
      local e = redis.call('XRANGE', KEYS[1], id, id)
      if e[1] then
        local f, args, before = e[1][2], {}, 0
        for j = 1, #f, 2 do
          if f[j] == 'deliveries' then
            before = tonumber(f[j + 1]) or 0
          else
            args[#args + 1] = f[j]
            args[#args + 1] = f[j + 1]
          end
        end
        args[#args + 1] = 'deliveries'
        args[#args + 1] = string.format('%d', before + n)
        redis.call('XADD', KEYS[1], '*', unpack(args))
      end
      redis.call('XACK', KEYS[1], ARGV[1], id)
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', idle, 'JUSTID')
    end
    released = released + 1
  end
end
if released > 0 then trim() end
return released
"#;

/// `ARGV[3..]`: pairs of (id, delivery counter). Resets the idle time of the ones still held (`XCLAIM` to
/// ourselves with min-idle 0 and `JUSTID`, which leaves the counter alone); returns a 1 or 0 per pair.
pub const EXTEND: &str = r#"
local out = {}
for i = 3, #ARGV, 2 do
  if owned(ARGV[i], tonumber(ARGV[i + 1])) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#;

/// `ARGV[3]` = min idle ms (the lease), `ARGV[4]` = cursor, `ARGV[5]` = count. Claims expired leases with
/// `XAUTOCLAIM` (which raises each one's counter) and reads each one's new counter, which `XAUTOCLAIM` does not
/// return. Returns `{next cursor, {{id, counter, fields}, …}, number of deleted ids}`: Redis 7 drops from the
/// pending list, and returns apart, entries that were deleted from the stream while pending.
pub const CLAIM: &str = r#"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  if e and e[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 0
    if p[1] then n = p[1][4] end
    out[#out + 1] = {e[1], n, e[2]}
  end
end
local deleted = 0
if r[3] then deleted = #r[3] end
return {r[1], out, deleted}
"#;

/// A script with the prelude, ready to invoke (its SHA is computed once).
pub fn script(body: &str) -> ::redis::Script {
    ::redis::Script::new(&format!("{PRELUDE}{body}"))
}
