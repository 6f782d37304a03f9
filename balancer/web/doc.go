// Package web is the balancer's web pages: the fleet dashboard at
// /dashboard/ (login, live fleet view, node actions, room creation) and the
// room links at /rooms/ that let people join a meeting without a front-end.
// Pages are rendered on the server from embedded templates; a little vanilla
// JavaScript refreshes them and asks for confirmations. The package knows
// nothing of the registry or the store: the balancer hands it a Fleet and a
// Rooms, which never carry a secret.
package web
