// Package turn keeps a BBB node pointed at live, working TURN servers: TURN
// discovery, probing, and rendering turn-stun-servers.xml.
package turn
