// The part of the PJRT plugin C interface (openxla/xla xla/pjrt/c/pjrt_c_api.h, API version 0.x)
// that Amoeba calls, declared here from the published layout: argument structs in their field
// order, the buffer-type codes, and the head of the function table. Written for this project; the
// upstream header is not copied. A plugin checks each argument struct's `struct_size` against the
// size it was built with and refuses smaller ones, so every struct below is declared with all the
// fields of interface version 0.94 (newer plugins accept it; older ones ignore the extra tail).
#ifndef AMOEBA_PJRT_SUBSET_H
#define AMOEBA_PJRT_SUBSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PJRT_Error PJRT_Error;
typedef struct PJRT_Event PJRT_Event;
typedef struct PJRT_Client PJRT_Client;
typedef struct PJRT_Device PJRT_Device;
typedef struct PJRT_Memory PJRT_Memory;
typedef struct PJRT_Executable PJRT_Executable;
typedef struct PJRT_LoadedExecutable PJRT_LoadedExecutable;
typedef struct PJRT_Buffer PJRT_Buffer;
typedef struct PJRT_ExecuteContext PJRT_ExecuteContext;

typedef struct {
  size_t struct_size;
  void *extension_start;
  int major_version;
  int minor_version;
} PJRT_Api_Version;

// The function table starts with these fields; the function pointers follow, in the order of
// `PJRTSlot` (Sources/XLA/PJRTPlugin.swift).
typedef struct {
  size_t struct_size;
  void *extension_start;
  PJRT_Api_Version pjrt_api_version;
} PJRT_Api_Head;

// Every entry point takes one argument struct and returns an error or NULL.
typedef PJRT_Error *(*PJRT_Entry)(void *args);
typedef void (*PJRT_VoidEntry)(void *args);

typedef enum {
  PJRT_Buffer_Type_INVALID = 0, PJRT_Buffer_Type_PRED, PJRT_Buffer_Type_S8, PJRT_Buffer_Type_S16,
  PJRT_Buffer_Type_S32, PJRT_Buffer_Type_S64, PJRT_Buffer_Type_U8, PJRT_Buffer_Type_U16,
  PJRT_Buffer_Type_U32, PJRT_Buffer_Type_U64, PJRT_Buffer_Type_F16, PJRT_Buffer_Type_F32,
  PJRT_Buffer_Type_F64, PJRT_Buffer_Type_BF16,
} PJRT_Buffer_Type;

typedef enum {
  PJRT_HostBufferSemantics_kImmutableOnlyDuringCall = 0,
  PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes = 1,
} PJRT_HostBufferSemantics;

typedef enum { PJRT_NamedValue_kString = 0, PJRT_NamedValue_kInt64, PJRT_NamedValue_kInt64List,
               PJRT_NamedValue_kFloat, PJRT_NamedValue_kBool } PJRT_NamedValue_Type;

typedef struct {
  size_t struct_size;
  void *extension_start;
  const char *name;
  size_t name_size;
  PJRT_NamedValue_Type type;
  union {
    const char *string_value;
    int64_t int64_value;
    const int64_t *int64_array_value;
    float float_value;
    bool bool_value;
  };
  size_t value_size;
} PJRT_NamedValue;

typedef struct { size_t struct_size; void *extension_start; PJRT_Error *error; } PJRT_Error_Destroy_Args;
typedef struct {
  size_t struct_size; void *extension_start; const PJRT_Error *error;
  const char *message; size_t message_size;
} PJRT_Error_Message_Args;
typedef struct { size_t struct_size; void *extension_start; const PJRT_Error *error; int code; } PJRT_Error_GetCode_Args;

typedef struct { size_t struct_size; void *extension_start; } PJRT_Plugin_Initialize_Args;
typedef struct {
  size_t struct_size; void *extension_start; const PJRT_NamedValue *attributes; size_t num_attributes;
} PJRT_Plugin_Attributes_Args;

typedef struct { size_t struct_size; void *extension_start; PJRT_Event *event; } PJRT_Event_Destroy_Args;
typedef struct { size_t struct_size; void *extension_start; PJRT_Event *event; } PJRT_Event_Await_Args;
typedef void (*PJRT_Event_OnReadyCallback)(PJRT_Error *error, void *user_arg);
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Event *event; PJRT_Event_OnReadyCallback callback; void *user_arg;
} PJRT_Event_OnReady_Args;

typedef struct {
  size_t struct_size; void *extension_start;
  const PJRT_NamedValue *create_options; size_t num_options;
  void *kv_get_callback; void *kv_get_user_arg; void *kv_put_callback; void *kv_put_user_arg;
  PJRT_Client *client;
  void *kv_try_get_callback; void *kv_try_get_user_arg;
} PJRT_Client_Create_Args;
typedef struct { size_t struct_size; void *extension_start; PJRT_Client *client; } PJRT_Client_Destroy_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client; const char *platform_name; size_t platform_name_size;
} PJRT_Client_PlatformName_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client;
  PJRT_Device *const *addressable_devices; size_t num_addressable_devices;
} PJRT_Client_AddressableDevices_Args;

typedef struct {
  size_t struct_size; void *extension_start; char *code; size_t code_size; const char *format; size_t format_size;
} PJRT_Program;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client; const PJRT_Program *program;
  const char *compile_options; size_t compile_options_size; PJRT_LoadedExecutable *executable;
} PJRT_Client_Compile_Args;

typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client;
  const void *data; PJRT_Buffer_Type type; const int64_t *dims; size_t num_dims;
  const int64_t *byte_strides; size_t num_byte_strides;
  PJRT_HostBufferSemantics host_buffer_semantics;
  PJRT_Device *device; PJRT_Memory *memory; void *device_layout;
  PJRT_Event *done_with_host_buffer; PJRT_Buffer *buffer;
} PJRT_Client_BufferFromHostBuffer_Args;

typedef struct { size_t struct_size; void *extension_start; PJRT_Executable *executable; } PJRT_Executable_Destroy_Args;
typedef struct { size_t struct_size; void *extension_start; PJRT_LoadedExecutable *executable; } PJRT_LoadedExecutable_Destroy_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_LoadedExecutable *loaded_executable; PJRT_Executable *executable;
} PJRT_LoadedExecutable_GetExecutable_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Executable *executable; size_t num_outputs;
} PJRT_Executable_NumOutputs_Args;

typedef struct {
  size_t struct_size; void *extension_start;
  void **send_callbacks; void **recv_callbacks; size_t num_send_ops; size_t num_recv_ops;
  int launch_id;
  const int64_t *non_donatable_input_indices; size_t num_non_donatable_input_indices;
  PJRT_ExecuteContext *context;
  const char *call_location;
  size_t num_tasks; int *task_ids; int64_t *incarnation_ids;
} PJRT_ExecuteOptions;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_LoadedExecutable *executable; PJRT_ExecuteOptions *options;
  PJRT_Buffer *const *const *argument_lists; size_t num_devices; size_t num_args;
  PJRT_Buffer **const *output_lists; PJRT_Event **device_complete_events; PJRT_Device *execute_device;
} PJRT_LoadedExecutable_Execute_Args;

typedef struct { size_t struct_size; void *extension_start; PJRT_Buffer *buffer; } PJRT_Buffer_Destroy_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Buffer *src; void *host_layout; void *dst; size_t dst_size; PJRT_Event *event;
} PJRT_Buffer_ToHostBuffer_Args;

// Ahead-of-time compilation for a device topology that need not be present (libtpu compiles for
// "v5e:2x2" on a host without a TPU).
typedef struct PJRT_TopologyDescription PJRT_TopologyDescription;
typedef struct PJRT_SerializedExecutable PJRT_SerializedExecutable;
typedef struct {
  size_t struct_size; void *extension_start; const char *topology_name; size_t topology_name_size;
  const PJRT_NamedValue *create_options; size_t num_options; PJRT_TopologyDescription *topology;
} PJRT_TopologyDescription_Create_Args;
typedef struct { size_t struct_size; void *extension_start; PJRT_TopologyDescription *topology; } PJRT_TopologyDescription_Destroy_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_TopologyDescription *topology; const char *platform_name; size_t platform_name_size;
} PJRT_TopologyDescription_PlatformName_Args;
typedef struct {
  size_t struct_size; void *extension_start; const PJRT_TopologyDescription *topology; const PJRT_Program *program;
  const char *compile_options; size_t compile_options_size; PJRT_Client *client; PJRT_Executable *executable;
} PJRT_Compile_Args;
typedef struct {
  size_t struct_size; void *extension_start; const PJRT_Executable *executable;
  const char *serialized_bytes; size_t serialized_bytes_size;
  PJRT_SerializedExecutable *serialized_executable; void (*serialized_executable_deleter)(PJRT_SerializedExecutable *);
} PJRT_Executable_Serialize_Args;
typedef struct { size_t struct_size; void *extension_start; PJRT_Executable *executable; int64_t size_in_bytes; } PJRT_Executable_SizeOfGeneratedCodeInBytes_Args;
// Declared with the fields of later versions too (peak, total): a plugin fills what it knows.
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Executable *executable;
  int64_t generated_code_size_in_bytes; int64_t argument_size_in_bytes; int64_t output_size_in_bytes;
  int64_t alias_size_in_bytes; int64_t temp_size_in_bytes;
  int64_t host_generated_code_size_in_bytes; int64_t host_argument_size_in_bytes; int64_t host_output_size_in_bytes;
  int64_t host_alias_size_in_bytes; int64_t host_temp_size_in_bytes;
  int64_t peak_memory_in_bytes; int64_t total_size_in_bytes;
} PJRT_Executable_GetCompiledMemoryStats_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client;
  const char *serialized_executable; size_t serialized_executable_size;
  PJRT_LoadedExecutable *loaded_executable;
  const char *overridden_serialized_compile_options; size_t overridden_serialized_compile_options_size;
} PJRT_Executable_DeserializeAndLoad_Args;
typedef struct {
  size_t struct_size; void *extension_start; PJRT_Client *client; const char *platform_version; size_t platform_version_size;
} PJRT_Client_PlatformVersion_Args;

#endif
