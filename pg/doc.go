// Package pg is everything pgkill asks of PostgreSQL: sessions listed with
// their blocking tree, the identity-checked signal and its verification,
// doctor and the state store, answering in a lock pile-up too.
package pg
