/*-------------------------------------------------------------------------
 *
 * citus.h
 *		Running on a Citus cluster (issue 17): which node this is, and the
 *		coordinator's way of sending keyring changes to every worker inside
 *		its own distributed (two-phase) transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_CITUS_H
#define PGCK_CITUS_H

#include "postgres.h"

/*
 * The most nodes (coordinator and workers) of one Citus cluster that
 * encrypt under the same key version: each node counts its own
 * encryptions, so each may use 1/PGCK_CITUS_MAX_NODES of the bound and
 * their sum stays within it.
 */
#define PGCK_CITUS_MAX_NODES 64

typedef enum PgckCitusRole
{
	PGCK_CITUS_NONE,			/* Citus not loaded or not in this database */
	PGCK_CITUS_COORDINATOR,
	PGCK_CITUS_WORKER,
} PgckCitusRole;

extern PgckCitusRole pgck_citus_role(void);

/* true on a Citus worker: its keyring is the coordinator's copy */
extern bool pgck_citus_is_worker(void);

/* a node's share of an encryption bound: bound / PGCK_CITUS_MAX_NODES on Citus */
extern uint64 pgck_citus_share(uint64 bound);

#endif							/* PGCK_CITUS_H */
