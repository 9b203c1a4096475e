/* settings: the one place the config becomes each module's settings (the model's
 * shape, a replica's options, the protocol's and the speed profile's settings), so that
 * no module below the run layer reads the config. */
#ifndef LOCO_SETTINGS_H
#define LOCO_SETTINGS_H

#include "loco/config.h"
#include "loco/hetero.h"
#include "loco/model.h"
#include "loco/replica.h"

struct loco_protocol_settings; /* protocol.h: so that this header needs no threads */

/* The shape a config describes (model.*; wpe holds model.seq_len positions). */
loco_shape loco_shape_from_config(const loco_config *c);

/* A replica's settings: batch (train.batch x model.seq_len), seed, the inner optimizer
 * ([train]), its schedule's progress and data stream. */
void loco_replica_opts_from_config(const loco_config *c, loco_replica_opts *o);

/* The protocol's settings ([outer], the budget, the evaluation schedule); batch_tokens
 * counts the snapshots' tokens. */
void loco_protocol_settings_from_config(const loco_config *c, long batch_tokens,
                                        struct loco_protocol_settings *st);

/* The speed profile's settings ([hetero], run.virtual_step_s). */
void loco_hetero_settings_from_config(const loco_config *c, loco_hetero_settings *st);

#endif
