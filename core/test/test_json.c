#include "common/json.h"
#include "test.h"

TEST(json_nests_and_escapes)
{
  lr_buf_t b;
  lr_buf_init(&b);
  lr_json_t j;
  lr_json_init(&j, &b);
  lr_json_obj(&j);
  lr_json_kstr(&j, "a", "x\"y\\\n\x01");
  lr_json_key(&j, "items");
  lr_json_arr(&j);
  lr_json_int(&j, -3);
  lr_json_num(&j, 0.5);
  lr_json_num(&j, 1e300 * 1e300);
  lr_json_obj(&j);
  lr_json_end(&j);
  lr_json_arr(&j);
  lr_json_end(&j);
  lr_json_end(&j);
  lr_json_kbool(&j, "ok", 1);
  lr_json_key(&j, "bad");
  lr_json_str(&j, "\xff\xc3\xa9", 3);
  lr_json_end(&j);
  lr_buf_putc(&b, 0);
  ASSERT_STREQ(b.data, "{\"a\":\"x\\\"y\\\\\\n\\u0001\",\"items\":[-3,0.5,null,{},[]],"
                       "\"ok\":true,\"bad\":\"\xef\xbf\xbd\xc3\xa9\"}");
  lr_buf_free(&b);
}
