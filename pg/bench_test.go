package pg
