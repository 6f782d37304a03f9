// Command bbb-agent is the daemon on every BBB and TURN node (`run`) and the
// admin's tool to ask it what it is doing and to act on it (`status`,
// `drain`, `undrain`, `check`, `config`, `dns plan|apply|delete`).
//
// `run` builds the parts (agent, admin socket, metrics server, watchdog)
// from flags, BBB_AGENT_* variables and agent.yaml, then supervises them:
// when one fails or the agent is done, the others stop.
package main
