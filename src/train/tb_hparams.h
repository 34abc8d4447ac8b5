/* TensorBoard hparams (`--log_config`), as accelerate's TensorBoardTracker.store_init_configuration
 * writes kohya's sanitized argument dict: torch's SummaryWriter.add_hparams(values,
 * metric_dict={}) builds three summaries with the hparams plugin's protobufs
 * (torch.utils.tensorboard.summary.hparams) and writes them, each in an Event with no step,
 * into a new event file in a sub-folder of the tracker folder named str(time.time()):
 *   "_hparams_/experiment"          HParamsPluginData{experiment: Experiment{hparam_infos:
 *                                   [HParamInfo{name, type}] in the dict's order, no metrics}}
 *   "_hparams_/session_start_info"  HParamsPluginData{session_start_info: {hparams: map name ->
 *                                   google.protobuf.Value}}
 *   "_hparams_/session_end_info"    HParamsPluginData{session_end_info: {status: SUCCESS}}
 * each as Summary.Value{tag, metadata: SummaryMetadata{plugin_data{plugin_name "hparams",
 * content}}} (plugin data version 0, so left out). Values: None is skipped; bool and int are
 * Python ints, so numbers (DATA_TYPE_FLOAT64, number_value 1.0 / 0.0 for True / False); str
 * is DATA_TYPE_STRING with string_value. The map's entries are written sorted by name
 * (protobuf's deterministic order; Python's writer uses its hash order, and readers see a
 * map either way). The event file is named as SummaryWriter names it, with the process's
 * second writer number (1): events.out.tfevents.<%010d time>.<host>.<pid>.1 */
#ifndef SDTI_TRAIN_TB_HPARAMS_H
#define SDTI_TRAIN_TB_HPARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum TbHParamKind { TB_HPARAM_NUMBER, TB_HPARAM_STRING } TbHParamKind;

typedef struct TbHParam {
    const char *name;
    TbHParamKind kind;
    double number;      /* TB_HPARAM_NUMBER */
    const char *string; /* TB_HPARAM_STRING */
} TbHParam;

/* The three events, each framed as a TFRecord, concatenated in the order above; *out is
 * malloc'd. */
int tb_hparams_encode(const TbHParam *params, int count, double wall_time, uint8_t **out,
                      size_t *size, Error *err);

/* Python's repr of a float (the shortest text that reads back to it; what str(time.time())
 * gives): "1733250000.25", "0.0001", "1e-05", "2.0". */
void tb_py_float_repr(double x, char *buf, size_t size);

/* Makes tracker_dir/<repr(wall_time)>/ and writes the file_version event and the three
 * hparams events into an event file there. *folder (malloc'd, may be NULL) gets the
 * sub-folder's path. */
int tb_hparams_write(const char *tracker_dir, const TbHParam *params, int count, double wall_time,
                     char **folder, Error *err);

#endif
