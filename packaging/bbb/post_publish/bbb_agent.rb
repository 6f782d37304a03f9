#!/usr/bin/ruby
# frozen_string_literal: true

# bbb-agent's BigBlueButton post_publish hook, installed by the bbb-agent
# package into /usr/local/bigbluebutton/core/scripts/post_publish/.
# BBB's record-and-playback runs it as `bbb_agent.rb -m RECORD_ID -f FORMAT`
# once a recording is published; it tells the agent with
# `bbb-agent recordings notify`. It never fails BBB's publish step: it
# always exits 0, and the agent gets at most 60 seconds
# (BBB_AGENT_HOOK_TIMEOUT seconds when set).

require 'optparse'
require 'timeout'

record_id = nil
format = nil
begin
  OptionParser.new do |o|
    o.on('-m', '--meeting-id ID') { |v| record_id = v }
    o.on('-f', '--format FORMAT') { |v| format = v }
  end.parse!(ARGV)
rescue OptionParser::ParseError => e
  warn "bbb_agent.rb: #{e.message}"
end

if record_id.nil? || record_id.empty?
  warn 'bbb_agent.rb: no -m RECORD_ID given; nothing to notify'
  exit 0
end

agent = ENV.fetch('BBB_AGENT_BIN', '/usr/bin/bbb-agent') # tests run a fake
limit = Float(ENV.fetch('BBB_AGENT_HOOK_TIMEOUT', '60'), exception: false) || 60
cmd = [agent, 'recordings', 'notify', '--record-id', record_id]
cmd += ['--format', format] unless format.nil? || format.empty?
begin
  pid = Process.spawn(*cmd, in: File::NULL)
  begin
    Timeout.timeout(limit) { Process.wait(pid) }
    warn "bbb_agent.rb: #{cmd.join(' ')}: #{$?}" unless $?.success?
  rescue Timeout::Error
    Process.kill('KILL', pid)
    Process.wait(pid)
    warn "bbb_agent.rb: #{cmd.join(' ')}: no answer within #{limit}s, killed"
  end
rescue SystemCallError => e
  warn "bbb_agent.rb: #{cmd.join(' ')}: #{e.message}"
end
exit 0
