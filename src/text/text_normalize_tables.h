/* Unicode and HTML data for the tokenizer's text normalisation, generated from the pinned
 * reference environment (Python's str methods, the `regex` module, ftfy) by
 * tools/reference/make_text_tables.py, so the C side follows the reference's Unicode versions.
 * Every table is sorted by its key (code point, or entity name as bytes). */
#ifndef SDTI_TEXT_NORMALIZE_TABLES_H
#define SDTI_TEXT_NORMALIZE_TABLES_H

#include <stddef.h>
#include <stdint.h>

typedef struct TextRange {
    uint32_t first, last; /* inclusive */
} TextRange;

typedef struct TextCaseMap {
    uint32_t from, to;
} TextCaseMap;

typedef struct TextCharMap {
    uint32_t cp;
    const char *value; /* UTF-8 */
} TextCharMap;

typedef struct TextEntity {
    const char *name;  /* between '&' and ';' */
    const char *value; /* UTF-8 */
} TextEntity;

extern const TextRange text_regex_letter[], text_regex_number[], text_regex_other[],
    text_regex_space[];
extern const size_t text_regex_letter_count, text_regex_number_count, text_regex_other_count,
    text_regex_space_count;
extern const TextRange text_python_space[], text_case_ignorable[], text_cased[];
extern const size_t text_python_space_count, text_case_ignorable_count, text_cased_count;
extern const TextCaseMap text_lower_map[];
extern const size_t text_lower_map_count;
extern const TextEntity text_html_entities[];
extern const size_t text_html_entities_count;
extern const TextCharMap text_html_invalid_charrefs[], text_width_map[], text_ligatures[],
    text_c1_windows1252[];
extern const size_t text_html_invalid_charrefs_count, text_width_map_count, text_ligatures_count,
    text_c1_windows1252_count;
extern const uint32_t text_html_invalid_codepoints[];
extern const size_t text_html_invalid_codepoints_count;

#endif
